"""Feedback in: bounce (DSN) and complaint (ARF) parsers, ESP webhooks, the bounce mailbox reader."""
