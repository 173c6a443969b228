"""Fakes and helpers shared by more than one test module (and by the benchmarks), never test modules themselves.

Servers on 127.0.0.1 that speak real wire formats (``provider_server``: OpenAI, Anthropic and Gemini; ``oracle_server``:
Pyth Hermes, Pyth benchmarks and Switchboard crossbar; ``collector_server``: news feeds, X and Discord), the loop they
run on (``loopback``), and the scripted models and sample data several tests build on (``conversation``,
``memories``, ``risk_api``, ``talib_reference``). Fixtures stay in ``conftest.py``; a test module imports from here,
never from another test module.
"""
