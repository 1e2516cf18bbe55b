// End-to-end test of `normstyle serve`'s page in headless Chromium (Debian's), driven by
// playwright-core. Usage: node serve_page.mjs URL PHOTO STYLE SCREENSHOT
// Prints one JSON line: the checks' results and the slider-to-image latencies (ms).
import { chromium } from "playwright-core";
import { readFile } from "node:fs/promises";

const [url, photo, style, screenshot] = process.argv.slice(2);
const fail = (msg) => { console.error(`serve_page: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  const updates = () => page.evaluate(() => window.normstyle.updates);
  // The bytes of the picture shown now (the server's PNG, as the page received it).
  const shown = () => page.evaluate(async () => {
    const r = await fetch(document.getElementById("result").src);
    return Array.from(new Uint8Array(await r.arrayBuffer()));
  });
  const nextPicture = async (before, what) => {
    await page.waitForFunction((n) => window.normstyle.updates > n, before, { timeout: 60000 })
      .catch(() => fail(`${what}: no new picture`));
  };

  // The page starts on a bundled sample; upload our own photo and style.
  await page.waitForFunction(() => window.normstyle.updates >= 1, null, { timeout: 60000 })
    .catch(() => fail("the page showed no first picture"));
  let n = await updates();
  await page.setInputFiles("#content-file", photo);
  await nextPicture(n, "upload photo");
  n = await updates();
  await page.setInputFiles("#style-file", style);
  await nextPicture(n, "upload style");
  const uploaded = await shown();

  // Move α: the picture changes.
  const setSlider = (id, v) => page.$eval(id, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }, v);
  n = await updates();
  await setSlider("#alpha", "0.5");
  await nextPicture(n, "alpha 0.5");
  const atHalf = await shown();
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (same(uploaded, atHalf)) fail("moving α did not change the picture");

  // Switch the norm from in to ln: the picture changes again.
  n = await updates();
  await page.selectOption("#norm", "ln");
  await nextPicture(n, "norm ln");
  const ln = await shown();
  if (same(atHalf, ln)) fail("switching to ln did not change the picture");

  // The page's picture is the API's PNG for the same settings.
  const form = new FormData();
  form.append("content", new Blob([await readFile(photo)]), "content");
  form.append("style", new Blob([await readFile(style)]), "style");
  for (const [k, v] of Object.entries({ alpha: "0.5", norm: "ln", preserve_color: "none", content_size: "512", model: "magenta" })) {
    form.append(k, v);
  }
  const api = new Uint8Array(await (await fetch(new URL("/api/stylize", url), { method: "POST", body: form })).arrayBuffer());
  if (!same(Array.from(api), ln)) fail("the page's picture differs from the API's PNG");

  // Slider-to-picture latency at 512² with the style cached: several moves, one at a time.
  const latencies = [];
  for (const a of ["0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]) {
    n = await updates();
    await setSlider("#alpha", a);
    await nextPicture(n, `alpha ${a}`);
    latencies.push(await page.evaluate(() => window.normstyle.lastLatencyMs));
  }

  // The compare view: a grid and one table row per tile.
  await page.click("#compare-button");
  await page.waitForFunction(() => document.querySelectorAll("#compare-table tbody tr").length > 0, null, { timeout: 120000 })
    .catch(() => fail("the compare view showed no table"));
  const rows = await page.evaluate(() => document.querySelectorAll("#compare-table tbody tr").length);
  await page.waitForFunction(() => document.getElementById("compare-grid").complete, null, { timeout: 30000 });
  await page.screenshot({ path: screenshot, fullPage: true });

  // A trained network (from `serve --models`): its style is built in, so the style inputs,
  // α and compare are disabled, and a picture comes without a style.
  let trainedDisabled = null;
  const trainedId = await page.evaluate(() => {
    const o = [...document.querySelectorAll("#model option")].find((o) => o.value.startsWith("trained:"));
    return o ? o.value : null;
  });
  if (trainedId) {
    n = await updates();
    await page.selectOption("#model", trainedId);
    await nextPicture(n, "trained model");
    trainedDisabled = await page.evaluate(() =>
      ["alpha", "style-file", "compare-button"].every((id) => document.getElementById(id).disabled));
    if (!trainedDisabled) fail("a trained model left the style controls enabled");
  }
  if (errors.length) fail(`page errors: ${errors.join("; ")}`);
  const sorted = [...latencies].sort((a, b) => a - b);
  console.log(JSON.stringify({ ok: true, compare_rows: rows, trained: trainedId, trained_controls_disabled: trainedDisabled, latencies_ms: latencies, median_ms: sorted[Math.floor(sorted.length / 2)] }));
} finally {
  await browser.close();
}
