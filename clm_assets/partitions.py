"""Partitions shared by every group: UTC days × symbols.

Symbol keys come from settings and never contain ``,`` or ``|`` (Dagster's range and
multi-key separators). Models, backtests and promotion use the same definition with the
day read as the *as-of* date.
"""

from __future__ import annotations

import dagster as dg

from clm_assets.settings import Settings

DATE = "date"
SYMBOL = "symbol"


def market_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            DATE: dg.DailyPartitionsDefinition(
                start_date=settings.start_date, end_date=settings.end_date, timezone="UTC"
            ),
            SYMBOL: dg.StaticPartitionsDefinition(list(settings.symbols)),
        }
    )


def window_mapping(days_before: int, days_after: int = 0) -> dg.MultiPartitionMapping:
    """Same symbol, days ``[d - days_before, d + days_after]`` of the upstream asset.

    Days before the first partition are allowed (the earliest partitions warm up on what
    exists); the consumer must check what it actually got, because a missing upstream day
    silently loads zero rows.
    """
    return dg.MultiPartitionMapping(
        {
            DATE: dg.DimensionPartitionMapping(
                DATE,
                dg.TimeWindowPartitionMapping(
                    start_offset=-days_before,
                    end_offset=days_after,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
            SYMBOL: dg.DimensionPartitionMapping(SYMBOL, dg.IdentityPartitionMapping()),
        }
    )
