"""The scrape stage: one HTTP GET of one target into bytes and a content type (``client``; its gzip and
deflate decoding under the size cap in ``inflater``), and which targets this replica owns when the bridge is
sharded (``shard``)."""

from promotel.scrape.client import (
    ACCEPT,
    BudgetSkipped,
    RateBudget,
    Scraper,
    ScrapeResult,
    accept_header,
    budget_overcommits,
    build_ssl_context,
    parse_retry_after,
)

__all__ = ["ACCEPT", "BudgetSkipped", "RateBudget", "ScrapeResult", "Scraper", "accept_header", "budget_overcommits", "build_ssl_context",
           "parse_retry_after"]
