"""Feeder models: the plain data the DSO's services compute on (see `model.Feeder`)."""
