"""U5's feeder (/work/notes/U5_work/r_clean.yaml), shared by the controller's and the edge's tests of the
clean premium in the strict budget (M15, E5): one clean seller (`solar`), a genset MG (`diesel`), and
`factory`, clean-only with a clean premium, the only MG with rules.
"""

from __future__ import annotations


def u5_feeder(premium: float) -> dict[str, object]:
    """The feeder as a scenario document (`build_scenario`), `factory`'s owner paying `premium` per kWh."""
    return {
        "name": "three-mg",
        "profiles": {
            "sunny": {
                "irradiance": [[0, 0], [6, 0], [12.5, 950], [19, 0], [24, 0]],
                "load": [[0, 0.5], [7, 0.8], [12, 0.7], [18, 1.0], [22, 0.8], [24, 0.5]],
            },
            "works": {
                "irradiance": [[0, 0], [6, 0], [12.5, 900], [19, 0], [24, 0]],
                "load": [[0, 0.4], [7, 0.9], [9, 1.0], [17, 0.9], [19, 0.5], [24, 0.4]],
            },
        },
        "microgrids": [
            {
                "name": "solar",
                "profile": "sunny",
                "devices": [
                    {"name": "pv1", "kind": "pv", "params": {"rating_w": 200000}},
                    {
                        "name": "bess1",
                        "kind": "battery",
                        "params": {
                            "capacity_wh": 300000,
                            "max_charge_w": 100000,
                            "max_discharge_w": 100000,
                            "soc_pct": 50,
                        },
                    },
                    {"name": "load", "kind": "load", "params": {"critical_w": 40000, "sheddable_w": 20000}},
                ],
            },
            {
                "name": "factory",
                "profile": "works",
                "devices": [
                    {"name": "pv1", "kind": "pv", "params": {"rating_w": 30000}},
                    {"name": "load", "kind": "load", "params": {"critical_w": 150000, "sheddable_w": 50000}},
                ],
            },
            {
                "name": "diesel",
                "profile": "sunny",
                "devices": [
                    {
                        "name": "gen1",
                        "kind": "genset",
                        "params": {"rating_w": 120000, "min_load_pct": 30, "fuel_price_per_l": 0.6},
                    },
                    {"name": "load", "kind": "load", "params": {"critical_w": 60000, "sheddable_w": 20000}},
                ],
            },
        ],
        "market": {
            "interval_minutes": 15,
            "retail": [[0, 0.14], [7, 0.22], [17, 0.30], [21, 0.14], [24, 0.14]],
            "feed_in": 0.05,
            "mg_rules": {"factory": {"clean_only": True, "clean_premium": premium}},
        },
    }
