"""The watch list kept in the browser: in its local storage (it is there again the next time the page
opens) and in the page's address (``?watch=...``: a link shares it). An address that names a watch
list wins over the stored one."""

from __future__ import annotations

import param
from panel.reactive import ReactiveHTML


class WatchStore(ReactiveHTML):
    """An invisible component whose ``value`` is the watch list's text, as the browser holds it."""

    value = param.String(default="")
    key = param.String(default="flights-app-watch")

    _template = '<div id="store" style="display: none"></div>'
    _scripts = {
        "render": """
          const given = new URLSearchParams(window.location.search).get('watch');
          const saved = window.localStorage.getItem(data.key);
          if (given !== null) data.value = given;
          else if (saved) data.value = saved;
        """,
        "value": """
          window.localStorage.setItem(data.key, data.value || '');
          const url = new URL(window.location.href);
          if (data.value) url.searchParams.set('watch', data.value); else url.searchParams.delete('watch');
          window.history.replaceState(null, '', url);
        """,
    }
