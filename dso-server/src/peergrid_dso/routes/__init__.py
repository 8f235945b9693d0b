"""HTTP routes of the DSO server, one APIRouter per area."""
