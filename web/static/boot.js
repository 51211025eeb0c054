/**
 * A classic script run while the page is parsed: it starts the request for the jobs table's
 * first page before the modules have loaded, which on a busy machine is most of a page load.
 * api.js hands this response to the first call for the same URL.
 */
"use strict";
(function startFirstPage() {
  if (!/^(#\/?)?$/.test(location.hash)) return;
  const token = sessionStorage.getItem("trainer.api_token");
  const url = "/train/jobs?limit=25&offset=0";
  globalThis.trainerEarly = {
    url,
    response: fetch(url, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    }),
  };
})();
