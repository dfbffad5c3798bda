"""Rollout notifications: which webhooks hear of an event (`kinds`, pure), what they are sent (`bodies`, pure), and
the delivery in the background (`sender`: one ordered queue per webhook, retries, dedupe)."""
