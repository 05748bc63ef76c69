"""The action kinds: one module per kind (opt, poll, lead, reply, forward_sms,
forward_email, webhook, mqtt_events), listed in registry.py; the runners of the kinds
with durable jobs (webhook.py, email.py, mqtt.py) behind the `Action` protocol
(base.py); emitter.py: which jobs an event becomes."""
