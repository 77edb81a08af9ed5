"""Dagster asset groups, one package per group; each exposes ``build_defs(settings)``."""

import warnings

import dagster as dg

# Backfill policies and multi-dimensional partition mappings are beta in Dagster 1.13; we use
# them deliberately (see README, "Backfills"), so their warnings are noise in every run log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
