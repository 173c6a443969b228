"""Alert rules a user sets in words ("ping me if btc drops below 25k"), checked against prices, indicators and open
positions, and delivered once to the terminal and a signed webhook.

- ``rules``: the ``AlertRule`` model and ``rule_from_text``, the parser chat and ``mikey alerts add`` share;
- ``store``: the rules in SQLite (``settings.alerts_db``); ``mark_fired`` is a compare-and-set, so a rule fires once
  however many evaluators race;
- ``evaluate``: which active rules hold now, on a price feed (quotes, indicators from ``mikey.analysis``) and a
  broker's positions (distance to liquidation from ``mikey.risk.liquidation``);
- ``deliver``: the terminal line and the webhook POST (HMAC-SHA256 signed, retried with backoff);
- ``watch``: one check (evaluate, claim, deliver, record), run by ``mikey insights --every`` each round and by the
  ingestion pipeline on each batch of new quotes;
- ``chat``: the reply to an alert request in chat.
"""
