"""Promotion gates as launchpad config."""

import dagster as dg

from clm_assets.registry.gates import Gates


class PromotionResource(dg.ConfigurableResource):
    """A candidate must pass every gate; PSR gates apply vs flat and vs the incumbent."""

    min_trades: int = 10
    min_sharpe: float = 0.5
    max_drawdown: float = 0.25
    min_profit_factor: float = 1.05
    min_psr: float = 0.95

    def gates(self) -> Gates:
        return Gates(
            min_trades=self.min_trades,
            min_sharpe=self.min_sharpe,
            max_drawdown=self.max_drawdown,
            min_profit_factor=self.min_profit_factor,
            min_psr=self.min_psr,
        )
