"""Static assets of the DSO operator console."""
