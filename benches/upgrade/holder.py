#!/usr/bin/env python3
"""What systemd does for lectern.socket and lectern.service, in one small
process: it holds the listening socket and runs `lectern serve` on it, one
generation at a time, passing the socket as fd 3 with LISTEN_FDS=1 and
LISTEN_PID (sd_listen_fds(3)).

SIGHUP is an upgrade as `systemctl restart lectern` does it: SIGTERM the
running Lectern, wait until it has exited (it drains the requests in
flight), then start the next one. Meanwhile the socket stays open here, so
new connections wait in its backlog. SIGTERM or SIGINT stops Lectern and
exits.

  holder.py ADDRESS PORT BACKLOG OUT_DIR LECTERN [ARGS...]

On stdout, one line per event (flushed), for benches/upgrade/run:
  ready GENERATION PID START_SECONDS
  restarted GENERATION PID DRAIN_SECONDS START_SECONDS
  died GENERATION PID STATUS
Each generation's stdout and stderr go to OUT_DIR/lectern-GENERATION.out.
"""

import os
import signal
import socket
import sys
import time

READY = b"Lectern listening on "
HANDLED = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def say(*words):
    print(*words, flush=True)


def spawn(listener, out_dir, generation, argv):
    out = os.path.join(out_dir, f"lectern-{generation}.out")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # fd 3, inheritable (dup2 onto itself, when the socket is fd 3
            # already, leaves close-on-exec set: hence set_inheritable);
            # every other descriptor Python opened is close-on-exec.
            if listener.fileno() != 3:
                os.dup2(listener.fileno(), 3)
            os.set_inheritable(3, True)
            env = dict(os.environ)
            env["LISTEN_FDS"] = "1"
            env["LISTEN_PID"] = str(os.getpid())
            env["LISTEN_FDNAMES"] = "lectern.socket"
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(fd)
    return pid, out


def wait_ready(pid, out, generation):
    """Seconds until the generation printed its address; exits if it died."""
    started = time.monotonic()
    while True:
        with open(out, "rb") as f:
            if READY in f.read():
                return time.monotonic() - started
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            say("died", generation, pid, status)
            sys.exit(1)
        if time.monotonic() - started > 120:
            say("died", generation, pid, "not-listening-after-120s")
            os.kill(pid, signal.SIGKILL)
            sys.exit(1)
        time.sleep(0.005)


def stop(pid):
    """SIGTERM, then the seconds until the process exited."""
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    return time.monotonic() - started


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    address, port, backlog, out_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    argv = sys.argv[5:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(backlog)

    # Signals are taken one at a time with sigwait, never in a handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    generation = 0
    pid, out = spawn(listener, out_dir, generation, argv)
    say("ready", generation, pid, f"{wait_ready(pid, out, generation):.3f}")
    while True:
        received = signal.sigwait(HANDLED)
        if received == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                say("died", generation, pid, status)
                sys.exit(1)
        elif received == signal.SIGHUP:
            # systemd's order for a restart: stop the old one, then start the new.
            drained = stop(pid)
            generation += 1
            pid, out = spawn(listener, out_dir, generation, argv)
            started = wait_ready(pid, out, generation)
            say("restarted", generation, pid, f"{drained:.3f}", f"{started:.3f}")
        else:
            stop(pid)
            return


if __name__ == "__main__":
    main()
