"""A target system written with Qpid Proton (not with shadowbridge's code): receives n add
requests, checks the message layout of CONTRACT.md, and confirms each one with a uid.

With "list", it then receives a list request (a reconciliation run), checks its layout, and
answers with pages of two accounts on the confirmation address, after an administrator's work on
the target: the second account by login has a mail it was not given, the last one by login is
gone, and one nobody asked for (uid py-outside, login py-outside) is there (by login: the adds
arrive in the dispatcher's order, not in the order they were made).

usage: proton_target.py URL REQUESTS CONFIRMATIONS N [list]
"""
import json
import sys
import uuid

from proton import Message
from proton.utils import BlockingConnection

url, requests, confirmations, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
listing = sys.argv[5:] == ["list"]
accounts = []  # [uid, attributes], in the order of the adds
conn = BlockingConnection(url, allowed_mechs="PLAIN ANONYMOUS", allow_insecure_mechs=True, timeout=30)
receiver = conn.create_receiver(requests)
sender = conn.create_sender(confirmations)


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(2)


for i in range(n):
    m = receiver.receive(timeout=30)
    check(isinstance(m.body, str), "body is an AMQP string value, got %r" % type(m.body))
    body = json.loads(m.body)
    check(list(body) == ["operation", "objectClass", "attributes"], "simplifiedJson add keys %r" % list(body))
    check(body["operation"] == "add" and body["objectClass"] == "AccountObjectClass", "operation/objectClass")
    check(isinstance(body["attributes"]["shoeSize"][0], int), "shoeSize stays a number")
    check(isinstance(m.id, uuid.UUID), "message-id is a UUID, got %r" % (m.id,))
    p = m.properties
    check(p["operationId"] == str(m.id), "operationId property = message-id")
    check(p["_AMQ_DUPL_ID"] == p["operationId"], "_AMQ_DUPL_ID = operation id")
    check(p["attempt"] == 1 and p["resource"] == "fs" and len(p["shadowId"]) == 36, "properties %r" % p)
    check(m.durable, "durable")
    check(m.annotations.get("x-opt-jms-msg-type") == 5, "x-opt-jms-msg-type %r" % m.annotations)
    check(m.reply_to == confirmations, "reply-to %r" % m.reply_to)
    receiver.accept()
    uid = "py-" + body["attributes"]["login"][0]
    accounts.append([uid, body["attributes"]])
    sender.send(Message(correlation_id=m.id, body=json.dumps(
        {"resultStatus": "success", "message": "created by proton", "primaryIdentifiers": {"uid": [uid]}})))

if listing:
    m = receiver.receive(timeout=30)
    body = json.loads(m.body)
    check(body == {"operation": "list", "objectClass": "AccountObjectClass"}, "list request %r" % body)
    check(isinstance(m.id, uuid.UUID) and m.properties["operationId"] == str(m.id), "the run's id %r" % (m.id,))
    receiver.accept()
    run = str(m.id)
    accounts.sort(key=lambda a: a[1]["login"][0])
    accounts[1][1] = dict(accounts[1][1], mail=["changed@proton"])
    accounts = accounts[:-1] + [["py-outside", {"login": ["py-outside"]}]]
    pages = [accounts[i:i + 2] for i in range(0, len(accounts), 2)]
    for k, page in enumerate(pages):
        sender.send(Message(correlation_id=m.id, body=json.dumps({
            "reconciliationId": run, "page": k + 1, "last": k == len(pages) - 1,
            "accounts": [{"primaryIdentifiers": {"uid": [uid]}, "attributes": attrs} for uid, attrs in page]})))

conn.close()
print("ok", n)
