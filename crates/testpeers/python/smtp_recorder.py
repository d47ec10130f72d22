"""aiosmtpd handler recording what it receives, for Clarion's tests.

Run as: python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_recorder.Recorder DIRECTORY [pipelining]

Every accepted message is stored as DIRECTORY/<id>.eml (the bytes received) plus
DIRECTORY/<id>.json (the envelope), the JSON written last and atomically, so a reader that
sees the JSON also sees the message. Recipients whose local part starts with "defer" get
450, with "reject" get 550. With "pipelining", EHLO also announces PIPELINING (RFC 2920);
aiosmtpd reads commands in order from its buffer, so pipelined commands work.
"""

import json
import os
import uuid


class Recorder:
    def __init__(self, directory, pipelining=False):
        self.directory = directory
        self.pipelining = pipelining

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] != "pipelining"):
            parser.error("Recorder takes a directory, then optionally: pipelining")
        return cls(args[0], pipelining=len(args) == 2)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local_part = address.split("@", 1)[0]
        if local_part.startswith("defer"):
            return "450 4.2.1 Mailbox temporarily unavailable"
        if local_part.startswith("reject"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        path = os.path.join(self.directory, name)
        with open(path + ".eml", "wb") as message:
            message.write(envelope.original_content)
        record = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        with open(path + ".tmp", "w") as meta:
            json.dump(record, meta)
        os.rename(path + ".tmp", path + ".json")
        return "250 2.0.0 Accepted"
