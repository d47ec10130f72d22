"""An aiosmtpd server that requires STARTTLS and then AUTH, for Clarion's tests.

Run as: python3 smtp_auth_server.py PORT DIRECTORY CERTFILE KEYFILE USER PASSWORD

The aiosmtpd command line cannot enable AUTH, hence this script. Messages are stored by the
Recorder of smtp_recorder.py.
"""

import asyncio
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from smtp_recorder import Recorder


async def serve(port, directory, certificate, key, user, password):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        accepted = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers 535 to a refused login.
        return AuthResult(success=accepted, handled=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Recorder(directory),
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticate,
            loop=loop,
        ),
        "127.0.0.1",
        port,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port, directory, certificate, key, user, password = sys.argv[1:]
    asyncio.run(serve(int(port), directory, certificate, key, user, password))
