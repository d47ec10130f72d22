"""Verifies the DKIM signature of a message with dkimpy (Debian's python3-dkim), for Clarion's tests.

Run as: /usr/bin/python3 dkim_verify.py MESSAGE_FILE DNS_NAME DNS_VALUE

The public key comes from DNS_NAME / DNS_VALUE (the TXT record the user would publish), not from
DNS: any other name looked up is answered with nothing. Prints one JSON object,
{"verified": bool, "log": "..."} with dkimpy's own log, and exits 0 either way.
"""

import io
import json
import logging
import sys

import dkim


def main():
    message_file, dns_name, dns_value = sys.argv[1:4]
    with open(message_file, "rb") as message:
        raw = message.read()
    looked_up = []

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        looked_up.append(name)
        if name.rstrip(".").lower() == dns_name.rstrip(".").lower():
            return dns_value.encode("ascii")
        return None

    log = io.StringIO()
    logger = logging.getLogger("dkim_verify")
    logger.addHandler(logging.StreamHandler(log))
    logger.setLevel(logging.DEBUG)
    verified = dkim.verify(raw, logger=logger, dnsfunc=dnsfunc)
    print(json.dumps({"verified": bool(verified), "looked_up": looked_up, "log": log.getvalue()}))


if __name__ == "__main__":
    main()
