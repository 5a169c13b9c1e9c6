"""What the drills' Python clients share (imported, not run): one HTTP
request to Lectern with no redirect followed, a form's CSRF token with the
cookies its page set, a form posted as a browser on the site's own pages
posts it, and a login with an emailed link. Standard library only."""

import http.client
import os
import re
import urllib.parse

# The origin a form is posted from: the drills set server.public_url.
ORIGIN = os.environ.get("LECTERN__SERVER__PUBLIC_URL", "https://lectern.example")


class Site:
    def __init__(self, url, timeout=30):
        self.host = urllib.parse.urlsplit(url).netloc
        self.timeout = timeout

    def request(self, method, path, headers=None, body=None):
        """(status, headers as an http.client.HTTPMessage, body as bytes)."""
        connection = http.client.HTTPConnection(self.host, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, answer.headers, answer.read()
        finally:
            connection.close()

    def form(self, path, cookie=""):
        """GET a form's page: (its CSRF token, `cookie` with what the page set)."""
        _, headers, body = self.request("GET", path, {"Cookie": cookie} if cookie else {})
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
        return token, join_cookies(cookie, headers)

    def post_form(self, path, fields, cookie, headers=None):
        """POST `fields` with `cookie`: (status, headers, body)."""
        return self.request("POST", path, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": ORIGIN,
            "Cookie": cookie,
            **(headers or {}),
        }, urllib.parse.urlencode(fields))

    def log_in(self, link):
        """Presses the button of an emailed login link (a URL or its path):
        (status, Retry-After or "-", the session cookie or None)."""
        path = urllib.parse.urlsplit(link).path
        # The token is the CSRF cookie's, whichever form page set it: the
        # link-request page's needs no database (the link's own page looks
        # the link up, so it is a 503 while PostgreSQL is away).
        token, cookie = self.form("/login/magic")
        status, headers, _ = self.post_form(path, {"csrf_token": token}, cookie)
        sessions = [c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []
                    if c.startswith("lectern_session=")]
        return status, headers.get("Retry-After") or "-", sessions[0] if sessions else None


def join_cookies(cookie, headers):
    """`cookie` (a Cookie header's value) with the cookies `headers` set."""
    set_now = [c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []]
    return "; ".join(filter(None, [cookie] + set_now))
