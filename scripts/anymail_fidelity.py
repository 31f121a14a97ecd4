"""Compare mailpipe's normalization with django-anymail's, on anymail's own webhook tests.

Run by scripts/anymail-fidelity.sh from inside a django-anymail checkout (not part of CI).
It runs anymail's webhook test modules unchanged and, while they run, records every request
anymail's webhook views accepted (body and headers) and the events anymail made of it. Each
distinct request is then parsed by `mailpipe inspect`, and the two event lists are compared
field by field: event type, reject reason, recipient, message id and time. Anymail's tests
assert these fields against their expected values, so anymail's events stand for what the
tests assert (and more: fields a test does not assert are compared too).

Usage: anymail_fidelity.py MAILPIPE_BINARY [REPORT_JSON]
"""

import calendar
import collections
import json
import os
import subprocess
import sys
import tempfile
import unittest

# Anymail's esp_name -> mailpipe provider id. ESPs mailpipe does not serve are not run.
PROVIDERS = {
    "Amazon SES": "ses",
    "Brevo": "brevo",
    "MailerSend": "mailersend",
    "Mailgun": "mailgun",
    "Mailjet": "mailjet",
    "Mandrill": "mandrill",
    "Postal": "postal",
    "Postmark": "postmark",
    "Resend": "resend",
    "SendGrid": "sendgrid",
    "SparkPost": "sparkpost",
}
MODULES = [
    "tests.test_amazon_ses_webhooks",
    "tests.test_brevo_webhooks",
    "tests.test_mailersend_webhooks",
    "tests.test_mailgun_webhooks",
    "tests.test_mailjet_webhooks",
    "tests.test_mandrill_webhooks",
    "tests.test_postal_webhooks",
    "tests.test_postmark_webhooks",
    "tests.test_resend_webhooks",
    "tests.test_sendgrid_webhooks",
    "tests.test_sparkpost_webhooks",
]
FIELDS = ["event_type", "reject_reason", "recipient", "message_id", "time"]
# Headers that only carry credentials; mailpipe's parser never reads them.
SKIPPED_HEADERS = {"authorization", "cookie"}


# The reject reason mailpipe's one taxonomy rule implies where the ESP gives none
# (crates/mailpipe-normalize-core/src/draft.rs, implied_reject_reason).
IMPLIED = {"complained": "spam", "unsubscribed": "unsubscribed", "bounced": "other",
           "deferred": "other", "failed": "other", "rejected": "other"}


def explain(d):
    """Why mailpipe differs here on purpose, or None for a difference nobody explained."""
    provider, field, test = d["provider"], d.get("field"), d["test"]
    theirs, ours = d.get("anymail"), d.get("mailpipe")
    if field is None:
        if "credential_rotation" in test:
            return ("the test posts a body without the ESP's event discriminator to check "
                    "signatures only; mailpipe dead-letters it (missing_field), anymail makes "
                    "an unknown event")
        return None
    if field == "reject_reason" and theirs is None and ours == IMPLIED.get(d["event_type"]):
        return "one taxonomy rule for every ESP: complaint spam, unsubscribe unsubscribed, unclassified failure other"
    if field == "time" and provider == "ses":
        return "mailpipe takes the SES event's own time; anymail the SNS envelope's Timestamp (when SNS sent it)"
    if field == "time" and provider == "postal":
        return "mailpipe takes payload.timestamp (the delivery attempt); anymail the webhook's creation time"
    if field == "time" and theirs is None:
        return "mailpipe reads the event's own time field where anymail reads none"
    if provider == "postal" and test.endswith("test_failed_event") and field in ("event_type", "reject_reason"):
        return "MessageDeliveryFailed is a permanent SMTP failure at the receiving server: bounced (hard), not the taxonomy's failed (the ESP's own failure)"
    if provider == "sendgrid" and field == "message_id":
        return "mailpipe uses sg_message_id (SendGrid's id of the message); anymail its own anymail_id custom arg, which only mail sent through anymail carries"
    if provider == "sendgrid" and field == "reject_reason" and ours == "bounced":
        return "a SendGrid bounce is the taxonomy's bounced reason (anymail leaves it empty)"
    if provider == "mandrill" and field == "reject_reason":
        return "mailpipe classifies Mandrill bounces from bounce_description; anymail never sets one for Mandrill"
    if field == "recipient" and theirs and ours == theirs.lower():
        return "addresses are lower-cased (email_event.avsc)"
    if provider == "sparkpost" and test.endswith("initial_open_event_as_opened"):
        return "anymail maps initial_open to opened only with ANYMAIL_SPARKPOST_TRACK_INITIAL_OPEN_AS_OPENED, which this test turns on; its default, and ours, is unknown (no double-counted opens)"
    if provider == "sparkpost" and field == "reject_reason" and ours is None and "challenge_response" in test:
        return "an autoresponse is not a failure: no reject reason"
    return None


def record_requests():
    """Runs anymail's webhook tests, returning [(provider, body, headers, test, events)]."""
    sys.path.insert(0, os.getcwd())
    import django

    import runtests  # anymail's own: picks the test settings for this Django version

    os.environ["DJANGO_SETTINGS_MODULE"] = runtests.find_test_settings()
    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # what Django's test runner does first (test client host etc.)
    from anymail.signals import tracking
    from anymail.webhooks.base import AnymailCoreWebhookView

    seen = []
    current = []
    original_post = AnymailCoreWebhookView.post

    def post(view, request, *args, **kwargs):
        body = request.body
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIPPED_HEADERS}
        current.append([])
        try:
            response = original_post(view, request, *args, **kwargs)
        finally:
            events = current.pop()
        if response.status_code == 200 and view.esp_name in PROVIDERS:
            seen.append((PROVIDERS[view.esp_name], body, headers, test_name(), events))
        return response

    def on_event(sender, event, esp_name, **kwargs):
        if current:
            current[-1].append(event)

    AnymailCoreWebhookView.post = post
    tracking.connect(on_event, weak=False, dispatch_uid="mailpipe-fidelity")
    suite = unittest.defaultTestLoader.loadTestsFromNames(MODULES)
    # The tests' rejected requests log tracebacks on stderr: silence the file descriptor
    # (not the loggers, which some tests assert on) while they run.
    saved_stderr = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            result = unittest.TextTestRunner(stream=devnull, verbosity=0).run(suite)
        finally:
            os.dup2(saved_stderr, 2)
    print(f"anymail's webhook tests: {result.testsRun} run, "
          f"{len(result.failures) + len(result.errors)} failed", file=sys.stderr)
    for case, _ in result.failures + result.errors:
        print(f"  failed: {case.id()}", file=sys.stderr)
    return seen


def test_name():
    import inspect

    for frame in inspect.stack():
        case = frame.frame.f_locals.get("self")
        if isinstance(case, unittest.TestCase):
            return case.id().removeprefix("tests.")
    return "?"


def anymail_fields(event):
    time = event.timestamp
    return {
        "event_type": event.event_type,
        "reject_reason": event.reject_reason,
        "recipient": event.recipient or None,
        "message_id": None if event.message_id in (None, "") else str(event.message_id),
        # Whole milliseconds, truncated as mailpipe does (exact: no float arithmetic).
        "time": None if time is None else calendar.timegm(time.utctimetuple()) * 1000 + time.microsecond // 1000,
    }


def mailpipe_events(binary, provider, body, headers):
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        args = [binary, "inspect", provider, f.name]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        run = subprocess.run(args, capture_output=True)
    if run.returncode != 0:
        return None, run.stderr.decode(errors="replace").strip().splitlines()[-1:]
    events = [json.loads(line) for line in run.stdout.decode().splitlines() if line]
    return [mailpipe_fields(e) for e in events], None


def mailpipe_fields(event):
    return {
        "event_type": event["event_type"],
        "reject_reason": event["reject_reason"],
        "recipient": event["recipient"],
        "message_id": event["message_id"],
        "time": event["occurred_at"] or None,
    }


def compare(binary, seen):
    totals = collections.defaultdict(lambda: collections.Counter())
    differences = []
    distinct = {}
    for provider, body, headers, test, events in seen:
        distinct.setdefault((provider, body), (headers, test, events))
    for (provider, body), (headers, test, events) in sorted(distinct.items(), key=lambda i: i[1][1]):
        theirs = [anymail_fields(e) for e in events]
        ours, error = mailpipe_events(binary, provider, body, headers)
        count = totals[provider]
        count["events"] += len(theirs)
        if ours is None:
            differences.append({"provider": provider, "test": test, "difference": f"mailpipe refused: {error}"})
            continue
        if len(ours) != len(theirs):
            differences.append({
                "provider": provider, "test": test,
                "difference": f"anymail made {len(theirs)} events, mailpipe {len(ours)}",
            })
        for theirs_one, ours_one in zip(theirs, ours):
            if theirs_one["event_type"] == ours_one["event_type"]:
                count["event_type"] += 1
            wrong = [f for f in FIELDS if theirs_one[f] != ours_one[f]]
            if not wrong:
                count["all_fields"] += 1
            for field in wrong:
                differences.append({
                    "provider": provider, "test": test, "field": field,
                    "event_type": ours_one["event_type"],
                    "anymail": theirs_one[field], "mailpipe": ours_one[field],
                })
    return totals, differences


def main():
    binary = os.path.abspath(sys.argv[1])
    seen = record_requests()
    totals, differences = compare(binary, seen)
    print(f"{'provider':<11} {'events':>6} {'type agrees':>11} {'all agree':>9}")
    overall = collections.Counter()
    for provider in sorted(totals):
        c = totals[provider]
        overall.update(c)
        print(f"{provider:<11} {c['events']:>6} {c['event_type']:>11} {c['all_fields']:>9}")
    print(f"{'all':<11} {overall['events']:>6} {overall['event_type']:>11} {overall['all_fields']:>9}")
    for d in differences:
        d["why"] = explain(d)
    unexplained = [d for d in differences if d["why"] is None]
    print(f"\n{len(differences)} differences, {len(unexplained)} not explained:")
    for d in sorted(differences, key=lambda d: (d["why"] is not None, d["why"] or "", d["provider"])):
        what = (f"{d['field']}: anymail={d['anymail']!r} mailpipe={d['mailpipe']!r}" if "field" in d
                else d["difference"])
        print(f"  {d['provider']:<10} {d['test'].split('.')[-1]}: {what}")
        print(f"      {'NOT EXPLAINED' if d['why'] is None else 'on purpose: ' + d['why']}")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            json.dump({"totals": totals, "differences": differences}, f, indent=1)


if __name__ == "__main__":
    main()
