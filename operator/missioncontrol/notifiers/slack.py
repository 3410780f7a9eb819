"""Slack incoming webhooks (https://api.slack.com/messaging/webhooks), and the services that
accept the same body (Mattermost, Rocket.Chat, Discord's `/slack` endpoint).

The body is `text` (the fallback Slack shows in notifications and to clients that cannot
render blocks) plus `blocks`: a header, the summary, the incident's fields, its details,
and a context line with the links, the time and the dedup key. Slack's per-block limits
are applied here, because Slack rejects the whole message (`invalid_blocks`) when one
block is over them.
"""

from __future__ import annotations

from .base import JSON_HEADERS, Destination, Message, Request, truncate

KINDS: frozenset[str] = frozenset({"page", "acknowledge", "resolve", "update", "channel"})

TITLES = {
    "page": ":rotating_light: Page",
    "acknowledge": ":eyes: Acknowledged",
    "resolve": ":white_check_mark: Resolved",
    "update": ":memo: Update",
    "channel": ":satellite_antenna: Incident opened",
}

HEADER_LIMIT = 150
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000
FIELDS_PER_SECTION = 10
CONTEXT_ELEMENTS = 10


def format_request(message: Message, *, destination: Destination) -> Request:
    if not destination.url:
        raise ValueError("a Slack route needs the webhook URL from its Secret")
    return Request(url=destination.url, headers=dict(JSON_HEADERS),
                   body={"text": fallback(message), "blocks": blocks(message)})


def fallback(message: Message) -> str:
    title = TITLES[message.kind].split(" ", 1)[1]
    return truncate(f"{title} [{message.severity}] {message.runbook_id} "
                    f"{message.runbook_title} on {message.where}: {message.summary}",
                    TEXT_LIMIT)


def blocks(message: Message) -> list[dict]:
    header = f"{TITLES[message.kind]} {message.severity}: {message.runbook_id} " \
             f"{message.runbook_title}"
    fields = [
        ("Incident", message.dedup_key),
        *([("Cluster", message.cluster)] if message.cluster else []),
        ("Target", message.target),
        ("Severity", message.severity),
        ("Phase", message.phase),
        ("Runbook", f"{message.runbook_id} {message.runbook_title}"),
        *([("Role", message.role)] if message.role else []),
    ]
    result = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(header, HEADER_LIMIT), "emoji": True}},
        {"type": "section",
         "text": {"type": "mrkdwn", "text": truncate(escape(message.summary), TEXT_LIMIT)}},
        section(fields),
    ]
    details = list(message.details.items())
    if details:
        result.append(section(details[:FIELDS_PER_SECTION]))
    result.append(context(message, dropped=max(0, len(details) - FIELDS_PER_SECTION)))
    return result


def section(pairs: list[tuple[str, str]]) -> dict:
    return {"type": "section", "fields": [
        {"type": "mrkdwn", "text": truncate(f"*{escape(name)}*\n{escape(value)}", FIELD_LIMIT)}
        for name, value in pairs
    ]}


def context(message: Message, *, dropped: int) -> dict:
    # Slack renders <!date^...> in each reader's own time zone; the text after | is what
    # clients that cannot render dates show.
    epoch = int(message.timestamp.timestamp())
    moment = f"<!date^{epoch}^{{date_short_pretty}} {{time_secs}}|{message.iso_timestamp}>"
    elements = [f"{moment} · `{escape(message.dedup_key)}`"]
    if dropped:
        elements.append(f"{dropped} more details not shown")
    elements += [link(href=item.href, text=item.text) for item in message.links]
    return {"type": "context", "elements": [
        {"type": "mrkdwn", "text": text} for text in elements[:CONTEXT_ELEMENTS]
    ]}


def link(*, href: str, text: str) -> str:
    # Inside <href|text>, a '|' or '>' in the address would end it early.
    safe_href = href.replace("|", "%7C").replace(">", "%3E")
    return f"<{safe_href}|{escape(text or href)}>"


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: these three characters are control characters to it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
