/** Page-wide status: the notice line, the "how is this view kept up to date" indicator, and a
 * polling loop that never overlaps itself. */

/** Shows `text` in the alert line under the header; empty hides it. */
export function notice(text) {
  const node = document.getElementById("notice");
  node.textContent = text ?? "";
  node.hidden = !text;
}

export function setLive(text) {
  document.getElementById("live").textContent = text;
}

/**
 * Runs `tick` now and then every `ms` until stopped; a slow tick delays the next one rather
 * than piling requests up. Returns the stop function.
 */
export function every(ms, tick) {
  let stopped = false;
  let timer;
  const run = async () => {
    try {
      await tick();
    } catch (e) {
      console.warn(e);
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
