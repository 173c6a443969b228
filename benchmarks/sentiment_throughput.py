"""How many texts per second does ``LexiconScorer`` score? Prints the median of 5 runs over generated headlines.

Usage: python benchmarks/sentiment_throughput.py [--texts N] [--runs N]
Headlines are generated from templates with a fixed seed, so every run scores the same mix of positive, negative,
neutral, negated and phrase-bearing texts as a news feed would send. Loading the lexicons is timed apart: it is paid
once per process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from mikey.analysis.sentiment import LexiconScorer

SUBJECTS = ["Bitcoin", "BTC", "Ethereum", "ETH", "Solana", "SOL", "Crypto exchange", "DeFi protocol", "Stablecoin"]
TEMPLATES = [
    "{s} surges to record high as ETF inflows climb",
    "{s} plunges {n}% after exchange hack drains ${n}M",
    "{s} trades flat ahead of Fed meeting",
    "SEC sues {s} issuer over unregistered securities",
    "No crash in sight for {s}, analysts say",
    "{s} rallies {n}% on ETF approval hopes",
    "Rug pull drains ${n}M from {s} memecoin",
    "{s} developers schedule a call on the next upgrade",
    "{s} liquidations top ${n}M as price tanks",
    "{s} breaks out above resistance; bulls eye new all-time high",
    "Whales accumulate {s} while retail remains cautious",
    "{s} is not bullish here: funding turns negative and open interest falls",
]


def headlines(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS), n=rng.randint(2, 400)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    texts = headlines(args.texts)
    start = time.perf_counter()
    scorer = LexiconScorer()
    load = time.perf_counter() - start
    scorer.score(texts[:100])  # warm-up
    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        scorer.score(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    print(f"texts={len(texts)} runs={args.runs} scorer={scorer.method} (lexicon load {load * 1000:.0f} ms, once)")
    median, low, high = statistics.median(rates), min(rates), max(rates)
    print(f"LexiconScorer median {median:,.0f} texts/s (min {low:,.0f}, max {high:,.0f})")


if __name__ == "__main__":
    main()
