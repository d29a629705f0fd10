#!/usr/bin/env python3
"""Builds an Artemis instance's etc/broker.xml from the one `artemis create` wrote and the
project's broker.xml.fragment, so that the configuration shipped to users is the one under test.

usage: merge-fragment.py [--tls KEYSTORE PASSWORD] BROKER_XML FRAGMENT HOST PORT [EXTRA_XML]

- <acceptors>: the fragment's, bound to HOST:PORT instead of 0.0.0.0:5672; with --tls, TLS only
  (the PKCS#12 KEYSTORE with its PASSWORD: amqps:// for AMQP, sslEnabled for CORE clients);
- <addresses>: the fragment's (they include DLQ and ExpiryQueue);
- <address-settings>, <security-settings>: the fragment's first, then EXTRA's, then the
  generated catch-alls ("#"), which tests rely on to make their own queues;
- <id-cache-size>, <persist-id-cache>, <persist-delivery-count-before-delivery>: the fragment's,
  or EXTRA's.
EXTRA (optional) holds test-only additions in the same sections (an extra acceptor for TLS,
address settings that turn auto-creation off for one prefix, delivery counts kept across a
broker crash).
Plain text surgery, not an XML rewrite: Artemis' namespaced file stays as written.
"""
import re
import sys


def section(text, tag):
    """The inner text of the first <tag>...</tag> in text, or ''."""
    m = re.search(r"<%s>(.*?)</%s>" % (tag, tag), text, re.S)
    return m.group(1) if m else ""


def strip_comments(text):
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def replace_section(text, tag, inner):
    new, n = re.subn(r"<%s>.*?</%s>" % (tag, tag), lambda _: "<%s>%s</%s>" % (tag, inner, tag), text, count=1, flags=re.S)
    if n != 1:
        sys.exit("merge-fragment: no <%s> in broker.xml" % tag)
    return new


def prepend_section(text, tag, inner):
    new, n = re.subn(r"<%s>" % tag, lambda _: "<%s>%s" % (tag, inner), text, count=1)
    if n != 1:
        sys.exit("merge-fragment: no <%s> in broker.xml" % tag)
    return new


def main():
    args = sys.argv[1:]
    tls = None
    if args[:1] == ["--tls"]:
        if len(args) < 3:
            sys.exit(__doc__)
        tls, args = args[1:3], args[3:]
    if len(args) not in (4, 5):
        sys.exit(__doc__)
    broker_path, fragment_path, host, port = args[:4]
    broker = open(broker_path).read()
    fragment = strip_comments(open(fragment_path).read())
    extra = strip_comments(open(args[4]).read()) if len(args) == 5 else ""

    acceptors = section(fragment, "acceptors")
    if "tcp://0.0.0.0:5672" not in acceptors:
        sys.exit("merge-fragment: the fragment's acceptor must listen on tcp://0.0.0.0:5672")
    acceptors = acceptors.replace("tcp://0.0.0.0:5672", "tcp://%s:%s" % (host, port))
    if tls:
        acceptors = re.sub(r"(<acceptor [^>]*>[^<]*)(</acceptor>)",
                           lambda m: "%s;sslEnabled=true;keyStoreType=PKCS12;keyStorePath=%s;keyStorePassword=%s%s" % (m.group(1), tls[0], tls[1], m.group(2)),
                           acceptors)
    broker = replace_section(broker, "acceptors", acceptors + section(extra, "acceptors"))
    broker = replace_section(broker, "addresses", section(fragment, "addresses") + section(extra, "addresses"))
    for tag in ("address-settings", "security-settings"):
        broker = prepend_section(broker, tag, section(fragment, tag) + section(extra, tag))
    core_extra = ""
    for tag in ("id-cache-size", "persist-id-cache", "persist-delivery-count-before-delivery"):
        m = re.search(r"<%s>.*?</%s>" % (tag, tag), fragment, re.S) or re.search(r"<%s>.*?</%s>" % (tag, tag), extra, re.S)
        if m:
            broker = re.sub(r"\s*<%s>.*?</%s>" % (tag, tag), "", broker, flags=re.S)
            core_extra += "\n      " + m.group(0)
    broker = broker.replace("</core>", core_extra + "\n   </core>", 1)
    open(broker_path, "w").write(broker)


if __name__ == "__main__":
    main()
