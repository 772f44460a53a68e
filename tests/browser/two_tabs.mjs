// ringcast's page in a real browser: headless Chromium (the Debian package
// `chromium`, or CHROMIUM=path) driven by Playwright. Starts the server binary
// (RINGCAST=path, default target/release/ringcast) on a free port, opens two tabs,
// joins both to a room and exchanges a message; checks relayed text is shown as text
// (an HTML payload creates no element), the page's security headers, and that the
// server panel shows the cores. Exits non-zero on any failure; every wait is bounded.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.RINGCAST ?? path.join(root, "target/release/ringcast");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WAIT = 10_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitHealthy(base) {
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server at ${base} not healthy within ${WAIT} ms`);
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function main() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--cores", "2"], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  let browser;
  try {
    await waitHealthy(base);
    const response = await fetch(`${base}/`);
    const csp = response.headers.get("content-security-policy") ?? "";
    check(response.ok && (await response.text()).includes('data-testid="messages"'), "GET / serves the page");
    check(/default-src 'none'/.test(csp) && /script-src 'self'/.test(csp), `strict Content-Security-Policy (${csp})`);
    check(response.headers.get("x-content-type-options") === "nosniff", "X-Content-Type-Options: nosniff");

    browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
    const context = await browser.newContext();
    const [alice, bob] = [await context.newPage(), await context.newPage()];
    const errors = [];
    for (const page of [alice, bob]) {
      page.on("pageerror", (error) => errors.push(String(error)));
      page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
      await page.goto(`${base}/`);
      await page.waitForFunction(() => document.querySelector('[data-testid="client-id"]').textContent.startsWith("client_"), null, { timeout: WAIT });
    }
    for (const page of [alice, bob]) {
      await page.getByTestId("room-input").fill("lobby");
      await page.getByTestId("join-button").click();
      await page.getByTestId("messages").getByText("joined lobby").waitFor({ timeout: WAIT });
    }
    await alice.getByTestId("rooms").getByText("lobby (2)").waitFor({ timeout: WAIT });
    check(true, "both tabs joined lobby; the first sees 2 members");

    await alice.getByTestId("message-input").fill("hello from alice");
    await alice.getByTestId("send-button").click();
    await bob.getByTestId("messages").getByText("hello from alice").waitFor({ timeout: WAIT });
    check(true, "a room message from one tab appears in the other");

    const payload = '<img src=x id=injected onerror="window.pwned=1">';
    await bob.getByTestId("message-input").fill(payload);
    await bob.getByTestId("send-button").click();
    await alice.getByTestId("messages").getByText(payload).waitFor({ timeout: WAIT });
    check((await alice.locator("#injected").count()) === 0 && !(await alice.evaluate(() => window.pwned)), "relayed HTML is shown as text");

    await alice.waitForFunction(() => document.querySelectorAll("#cores tr").length === 2, null, { timeout: WAIT });
    check(true, "the server panel shows both cores");
    check(errors.length === 0, `no page errors (${errors.join("; ")})`);
  } finally {
    if (browser) await browser.close();
    server.kill("SIGTERM");
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`not ok - ${error.stack ?? error}`);
    process.exit(1);
  },
);
