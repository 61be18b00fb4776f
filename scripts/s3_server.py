"""Runs moto's S3-protocol server on a free loopback port until SIGTERM/SIGINT.

Used by scripts/s3-server.sh (and so by scripts/test.sh): the kernel picks the port
(bind to port 0), so parallel runs never race for one; the endpoint URL is written
atomically to --endpoint-file once the server accepts connections.
"""

import argparse
import os
import signal
import threading

from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-file", required=True)
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    tmp = args.endpoint_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"http://{host}:{port}\n")
    os.replace(tmp, args.endpoint_file)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
