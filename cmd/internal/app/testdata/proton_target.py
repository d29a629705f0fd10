"""A target system written with Qpid Proton (not with shadowbridge's code): receives n add
requests, checks the message layout of CONTRACT.md, and confirms each one with a uid.

usage: proton_target.py URL REQUESTS CONFIRMATIONS N
"""
import json
import sys
import uuid

from proton import Message
from proton.utils import BlockingConnection

url, requests, confirmations, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
    sender.send(Message(correlation_id=m.id, body=json.dumps(
        {"resultStatus": "success", "message": "created by proton", "primaryIdentifiers": {"uid": [uid]}})))

conn.close()
print("ok", n)
