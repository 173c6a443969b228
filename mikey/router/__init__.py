"""LLM access: model groups from settings, one LiteLLM Router over them, the local and offline writers, test fakes.

Only this package imports litellm, and only inside functions: importing it costs seconds.
"""
