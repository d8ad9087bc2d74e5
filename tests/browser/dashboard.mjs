// The dashboard in a real browser: Debian's Chromium, driven by playwright-core.
//
// Run by tests/system/dashboard.rs against a cluster that `run.sh` started (the
// environment says where: the front-end's URL, run.sh's path, and run.sh's own
// variables, inherited). It checks that the page
//   - loads from `/` with no console error and no request to any other host;
//   - lists the three replicas and the leader;
//   - shows looked-up toys in the cache's LRU order;
//   - shows a new leader within 3 s of `./run.sh kill <leader>`, without a reload,
//     while clients keep ordering (none of them sees an error);
//   - reports the killed replica down, then back and caught up after `./run.sh start`.
// With WATCH=frontend-kill (two front-ends, TOYSTORE_URL the load balancer's), it
// checks instead that the page lists both front-ends and names the one serving it;
// that after `./run.sh kill <that one>` it is live again within 5 s, without a
// reload, served by the other one, which shows the killed one down; and that the
// killed one shows up again after `./run.sh start`. Clients then resend a request
// that failed (an order with its Idempotency-Key), as browsers and SDKs do.
// With DASHBOARD_SCREENSHOT set it saves a screenshot there at the end.
// Prints one JSON line of findings; exits non-zero on the first failed check.

import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const base = need("TOYSTORE_URL");
const runSh = need("RUN_SH");
const executablePath = process.env.TOYSTORE_CHROMIUM || "/usr/bin/chromium";
const screenshot = process.env.DASHBOARD_SCREENSHOT;
const watch = process.env.WATCH || "leader-kill";
const NEW_LEADER_WITHIN_MS = 3000;
const LIVE_AGAIN_WITHIN_MS = 5000;

function need(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function fail(message) {
  throw new Error(`dashboard check failed: ${message}`);
}

function check(ok, message) {
  if (!ok) fail(message);
}

function runSh_(...args) {
  execFileSync("bash", [runSh, ...args], { stdio: ["ignore", "ignore", "inherit"] });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Clients that keep looking up and ordering toys until stopped; counts failures.
// With `resend`, a request that gets no answer, a 502 or a 503 is sent again (an
// order with the same Idempotency-Key), up to 20 times; `resent` counts those.
function traffic(toys, resend = false) {
  const counts = { lookups: 0, orders: 0, resent: 0, failed: [] };
  let keys = 0;
  const send = async (url, init) => {
    for (let tries = 1; ; tries++) {
      try {
        const res = await fetch(url, init);
        await res.arrayBuffer();
        if (!resend || ![502, 503].includes(res.status) || tries === 20) return res.status;
      } catch (e) {
        if (!resend || tries === 20) throw e;
      }
      counts.resent++;
      await sleep(100);
    }
  };
  let running = true;
  const weights = toys.map((_, i) => 1 / (i + 1)); // Zipf-like popularity
  const total = weights.reduce((a, b) => a + b, 0);
  const pick = () => {
    let r = Math.random() * total;
    for (let i = 0; i < toys.length; i++) {
      r -= weights[i];
      if (r <= 0) return toys[i];
    }
    return toys[toys.length - 1];
  };
  const client = async () => {
    while (running) {
      const toy = pick();
      try {
        if (Math.random() < 0.2) {
          const status = await send(`${base}/orders`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "idempotency-key": `browser-${process.pid}-${keys++}`,
            },
            body: JSON.stringify({ name: toy, quantity: 1 }),
          });
          // 409: sold out, an answer like any other.
          if (status !== 200 && status !== 409) counts.failed.push(`order ${status}`);
          counts.orders++;
        } else {
          const status = await send(`${base}/products/${encodeURIComponent(toy)}`);
          if (status !== 200) counts.failed.push(`lookup ${status}`);
          counts.lookups++;
        }
      } catch (e) {
        counts.failed.push(String(e));
      }
      await sleep(20);
    }
  };
  const clients = [client(), client(), client()];
  return {
    counts,
    stop: async () => {
      running = false;
      await Promise.all(clients);
    },
  };
}

const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
  ],
});
const found = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  const external = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(base + "/")) external.push(r.url());
  });

  // Loads from `/`, goes live.
  await page.goto(base + "/");
  check(page.url() === base + "/dashboard", `/ led to ${page.url()}, not /dashboard`);
  await page.waitForSelector("#connection.up", { timeout: 5000 });
  if (watch === "frontend-kill") {
    await frontendKill(page, found);
  } else {
    await leaderKill(page, found);
  }
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    found.screenshot = screenshot;
  }
  if (watch === "frontend-kill") {
    // The killed front-end's stream broke mid-reply: Chromium says so, once.
    const broken = errors.filter((e) => e.includes("net::ERR_INCOMPLETE_CHUNKED_ENCODING"));
    check(broken.length <= 1, `the stream broke ${broken.length} times`);
    found.stream_broke = broken.length;
    errors.splice(0, errors.length, ...errors.filter((e) => !broken.includes(e)));
  }
  check(errors.length === 0, `console errors: ${JSON.stringify(errors)}`);
  check(external.length === 0, `requests to other hosts: ${JSON.stringify(external)}`);
  found.console_errors = 0;
  found.external_requests = 0;
  console.log(JSON.stringify(found));
} catch (e) {
  console.error(e.message);
  console.error(`found so far: ${JSON.stringify(found)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function toyNames() {
  return (await (await fetch(`${base}/products`)).json()).data.map((p) => p.name);
}

// Stops the clients and checks that they placed orders and saw no error.
async function stopTraffic(load, found) {
  await load.stop();
  found.traffic = { lookups: load.counts.lookups, orders: load.counts.orders };
  if (load.counts.resent > 0) found.traffic.resent = load.counts.resent;
  check(load.counts.failed.length === 0, `clients saw errors: ${load.counts.failed.slice(0, 5)}`);
  check(load.counts.orders > 0, "no order was placed");
}

async function leaderKill(page, found) {
  // Three replicas, one of them the leader the summary names.
  await page.waitForFunction(
    () => document.querySelectorAll("tr[data-replica]:not(.down)").length === 3,
    null,
    { timeout: 10000 },
  );
  const leader = await page.getAttribute("#leader", "data-leader");
  check(/^[123]$/.test(leader || ""), `no leader shown (${leader})`);
  const role = await page.getAttribute(`tr[data-replica="${leader}"]`, "data-role");
  check(role === "leader", `order${leader} is named leader but its row says ${role}`);
  found.replicas = 3;
  found.leader = Number(leader);

  // Lookups: the cache list shows them most recently used first.
  const toys = await toyNames();
  const looked = toys.slice(0, 4);
  for (const toy of looked) {
    const res = await fetch(`${base}/products/${encodeURIComponent(toy)}`);
    check(res.status === 200, `lookup of ${toy}: ${res.status}`);
  }
  const expected = looked.map((t) => t.toLowerCase()).reverse();
  await page
    .waitForFunction(
      (want) => {
        const have = [...document.querySelectorAll("#lru li")].map((li) => li.dataset.name);
        return JSON.stringify(have.slice(0, want.length)) === JSON.stringify(want);
      },
      expected,
      { timeout: 5000 },
    )
    .catch(async () => {
      const have = await page.$$eval("#lru li", (lis) => lis.map((li) => li.dataset.name));
      fail(`cache list ${JSON.stringify(have)} does not start with ${JSON.stringify(expected)}`);
    });
  found.lru = expected;

  // Kill the leader while clients order; the page follows without a reload.
  const load = traffic(toys);
  await sleep(1500);
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  runSh_("kill", `order${leader}`);
  const killed = Date.now();
  await page
    .waitForFunction(
      (old) => {
        const now = document.querySelector("#leader")?.dataset.leader;
        return now && now !== old;
      },
      leader,
      { timeout: NEW_LEADER_WITHIN_MS },
    )
    .catch(() => fail(`no new leader shown within ${NEW_LEADER_WITHIN_MS} ms of the kill`));
  found.new_leader_after_ms = Date.now() - killed;
  found.new_leader = Number(await page.getAttribute("#leader", "data-leader"));
  check(
    await page.evaluate(() => window.notReloaded === true),
    "the page was reloaded",
  );
  await page.waitForSelector(`tr[data-replica="${leader}"].down`, { timeout: 3000 });

  // It comes back and catches up; the feed says so.
  runSh_("start", `order${leader}`);
  await page
    .waitForFunction(
      (id) => [...document.querySelectorAll("#feed li")].some((li) =>
        li.textContent.includes(`order${id} `) && li.textContent.includes("caught up")),
      leader,
      { timeout: 20000 },
    )
    .catch(() => fail(`the feed never said that order${leader} caught up`));
  await sleep(3000);
  await stopTraffic(load, found);
}

async function frontendKill(page, found) {
  // Both front-ends listed, the one serving the page named.
  await page.waitForFunction(
    () => document.querySelectorAll("tr[data-frontend]:not(.down)").length === 2,
    null,
    { timeout: 10000 },
  );
  const servedBy = (await page.textContent("#served-by")) || "";
  check(/^frontend[12]$/.test(servedBy), `no front-end named as serving the page (${servedBy})`);
  check(
    (await page.getAttribute(`tr[data-frontend="${servedBy}"]`, "class")).includes("this"),
    `${servedBy}'s row is not marked as this page's`,
  );
  found.frontends = 2;
  found.served_by = servedBy;

  // Kill it while clients order and look up through the balancer.
  const load = traffic(await toyNames(), true);
  await sleep(1500);
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  runSh_("kill", servedBy);
  const killed = Date.now();
  await page
    .waitForFunction(
      (old) =>
        document.querySelector("#connection.up") &&
        document.querySelector("#served-by")?.textContent !== old &&
        document.querySelector(`tr[data-frontend="${old}"].down`),
      servedBy,
      { timeout: LIVE_AGAIN_WITHIN_MS },
    )
    .catch(() =>
      fail(`not live from the other front-end within ${LIVE_AGAIN_WITHIN_MS} ms of the kill`),
    );
  found.live_again_after_ms = Date.now() - killed;
  found.then_served_by = await page.textContent("#served-by");
  check(await page.evaluate(() => window.notReloaded === true), "the page was reloaded");

  // It comes back; the page (served by the other one) says so.
  runSh_("start", servedBy);
  await page
    .waitForSelector(`tr[data-frontend="${servedBy}"]:not(.down)`, { timeout: 10000 })
    .catch(() => fail(`${servedBy} was never shown up again`));
  await page
    .waitForFunction(
      (name) => [...document.querySelectorAll("#feed li")].some((li) =>
        li.textContent.includes(`${name} is up`)),
      servedBy,
      { timeout: 3000 },
    )
    .catch(() => fail(`the feed never said that ${servedBy} is up`));
  await stopTraffic(load, found);
}
