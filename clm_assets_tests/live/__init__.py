"""Tests of the live replay exchange."""
