"""Sensors: what starts runs when nobody presses a button."""
