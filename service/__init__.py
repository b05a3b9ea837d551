"""Stock trading service: list stocks, buy them, see portfolios, report daily."""
