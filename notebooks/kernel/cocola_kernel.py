"""The notebooks' Jupyter kernel: ILua (a Lua kernel from PyPI) running lua5.4, with rich display.

ILua sends a cell's printed output as text and its returned values as their `inspect` text; it has
no way to show a picture. This kernel adds one without changing ILua: a cell asks for a picture by
writing a control sequence to standard output (`cocola.notebook.show` does),

    ESC ] cocola-display ; <mime type> ; <remove 0|1> ; <width in pixels or empty> ; <file path> BEL

and the kernel turns it into a `display_data` message carrying the file's bytes (base64 for PNG, the
text for SVG), in order with the text around it; the file is deleted afterwards when remove is 1.
After every cell the kernel waits for a sync marker written by the interpreter, so everything a cell
printed or showed reaches the notebook before the cell's result and the end of its execution.

Run as: python cocola_kernel.py -i lua5.4 -c <connection file> (what kernel.json says).
"""

import base64
import os

from twisted.internet import defer

from ilua.appbase import AppBase
from ilua.kernel import ILuaKernel

MARK = "\x1b]cocola-"
END = "\x07"
SYNC_CODE = "return _, io.write('\\27]cocola-sync\\7')"
SYNC_TIMEOUT_S = 10.0


class CocolaKernel(ILuaKernel):
    banner = "Lua 5.4 with cocola (ILua)"
    help_links = [{"text": "Lua 5.4 Reference", "url": "https://www.lua.org/manual/5.4/"}]

    def __init__(self, *args, **kwargs):
        os.environ["COCOLA_NOTEBOOK"] = "1"
        super().__init__(*args, **kwargs)
        self._buf = ""
        self._sync = None
        # the interpreter's stdout goes through _stdout; stderr stays as ILua sends it
        capture = self.lua_process.proto
        plain = capture.message_sink

        def sink(stream, data):
            if stream == "stdout":
                return self._stdout(data)
            return plain(stream, data)

        capture.message_sink = sink

    # ---- stdout: text, display requests and the sync marker --------------------------------------
    def _text(self, text):
        if text:
            self.send_update("stream", {"name": "stdout", "text": text})

    def _stdout(self, data):
        self._buf += data
        while True:
            i = self._buf.find(MARK)
            if i < 0:
                # keep a tail that could be the start of a marker split across reads
                keep = 0
                for k in range(min(len(MARK) - 1, len(self._buf)), 0, -1):
                    if MARK.startswith(self._buf[-k:]):
                        keep = k
                        break
                self._text(self._buf[:len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep:]
                return
            j = self._buf.find(END, i)
            if j < 0:
                self._text(self._buf[:i])
                self._buf = self._buf[i:]
                return
            self._text(self._buf[:i])
            body = self._buf[i + len(MARK):j]
            self._buf = self._buf[j + 1:]
            self._control(body)

    def _control(self, body):
        if body == "sync":
            if self._sync is not None and not self._sync.called:
                self._sync.callback(None)
            return
        if not body.startswith("display;"):
            self._text("[notebook: unknown control sequence %r]\n" % body[:40])
            return
        try:
            mime, remove, width, path = body[len("display;"):].split(";", 3)
            with open(path, "rb") as f:
                raw = f.read()
            if remove == "1":
                os.remove(path)
        except (ValueError, OSError) as e:
            self.send_update("stream", {"name": "stderr", "text": "cannot display: %s\n" % e})
            return
        if mime == "image/svg+xml":
            payload = raw.decode("utf-8", "replace")
        else:
            payload = base64.b64encode(raw).decode("ascii")
        metadata = {}
        if width:
            metadata[mime] = {"width": int(width)}
        self.send_update("display_data", {
            "data": {mime: payload, "text/plain": "<%s, %d bytes>" % (mime, len(raw))},
            "metadata": metadata,
        })

    # ---- execution: ILua's, then wait for the sync marker before replying -------------------------
    @defer.inlineCallbacks
    def _drain(self):
        self._sync = defer.Deferred()
        timer = self.reactor.callLater(SYNC_TIMEOUT_S, lambda: self._sync.called or self._sync.callback(None))
        yield self.proto.sendRequest({"type": "execute", "payload": SYNC_CODE})
        yield self._sync
        if timer.active():
            timer.cancel()
        self._sync = None

    @defer.inlineCallbacks
    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False):
        result = yield self.proto.sendRequest({"type": "execute", "payload": code})
        yield self._drain()
        payload = result["payload"]
        if payload["success"]:
            if payload["returned"] != "" and not silent:
                self.send_update("execute_result", {
                    "execution_count": self.execution_count,
                    "data": {"text/plain": payload["returned"]},
                    "metadata": {},
                })
            return {"status": "ok", "execution_count": self.execution_count,
                    "payload": [], "user_expressions": {}}
        traceback = payload["returned"].split("\n")
        if not silent:
            self.send_update("error", {"execution_count": self.execution_count,
                                       "traceback": traceback, "ename": "LuaError",
                                       "evalue": traceback[0]})
        return {"status": "error", "execution_count": self.execution_count,
                "traceback": traceback, "ename": "LuaError", "evalue": traceback[0]}


class CocolaKernelApp(AppBase):
    def __init__(self, *args, **kwargs):
        super().__init__(CocolaKernel, *args, **kwargs)
        self.parser.add_argument("-i", "--lua-interpreter", metavar="LUA",
                                 default=self._get_default("LUA_INTERPRETER", "lua5.4"),
                                 help="Lua interpreter to use for code evaluations")


if __name__ == "__main__":
    # ILua creates Jupyter's runtime folder without its parents; make sure they exist
    from jupyter_core.paths import jupyter_runtime_dir
    os.makedirs(jupyter_runtime_dir(), exist_ok=True)
    CocolaKernelApp().run()
