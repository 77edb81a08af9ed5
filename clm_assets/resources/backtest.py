"""Trading costs as launchpad config: every backtest number depends on them, so they are
set (and found later) on the run, not captured from the environment at import."""

from __future__ import annotations

import dagster as dg

from clm_assets.backtest.window import Costs


class BacktestResource(dg.ConfigurableResource):
    """Fees and slippage per unit of notional traded (basis points), and long-only."""

    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    long_only: bool = False

    def costs(self) -> Costs:
        if self.fee_bps < 0 or self.slippage_bps < 0:
            raise ValueError(
                f"fee_bps ({self.fee_bps}) and slippage_bps ({self.slippage_bps}) must be >= 0"
            )
        return Costs(self.fee_bps, self.slippage_bps, self.long_only)
