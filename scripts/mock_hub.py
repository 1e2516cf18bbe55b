#!/usr/bin/env python3
"""A minimal stand-in for the Hugging Face Hub, for checking downloads by hand: serves the files
of FOLDER as repository OWNER/NAME (`/OWNER/NAME/resolve/REV/FILE`, byte ranges, ETag and
X-Repo-Commit headers) on 127.0.0.1:PORT, and writes the request count to /tmp/mockhub.count.

    python3 scripts/mock_hub.py ../shared/fixtures/adain test/adain 18765 &
    HF_ENDPOINT=http://127.0.0.1:18765 normstyle stylize photo.jpg --style art.jpg \
        --model adain --hf-repo test/adain
"""
import http.server, os, sys, hashlib, threading
ROOT = sys.argv[1]; REPO = sys.argv[2]; PORT = int(sys.argv[3])
COUNT = [0]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        COUNT[0] += 1
        open('/tmp/mockhub.count','w').write(str(COUNT[0]))
        parts = self.path.strip('/').split('/')
        if len(parts) == 5 and '/'.join(parts[:2]) == REPO and parts[2] == 'resolve':
            f = os.path.join(ROOT, parts[4])
            if not os.path.isfile(f):
                self.send_response(404); self.send_header('Content-Length','0'); self.end_headers(); return
            data = open(f,'rb').read(); total = len(data)
            rng = self.headers.get('Range','bytes=0-')[6:]
            a, b = rng.split('-'); a = int(a); b = int(b) if b else total-1
            body = data[a:b+1]
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {a}-{b}/{total}')
            self.send_header('Content-Length', str(len(body)))
            self.send_header('ETag', '"%s"' % hashlib.sha256(data).hexdigest())
            self.send_header('X-Repo-Commit', 'f'*40)
            self.end_headers(); self.wfile.write(body); return
        self.send_response(404); self.send_header('Content-Length','0'); self.end_headers()
http.server.ThreadingHTTPServer(('127.0.0.1', PORT), H).serve_forever()
