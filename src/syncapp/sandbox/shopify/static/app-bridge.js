// A stand-in for https://cdn.shopify.com/shopifycloud/app-bridge.js, served by the Shopify
// sandbox. It gives the app the part of App Bridge an app home relies on:
//   shopify.idToken()         a Promise of a fresh ID token, asked of the admin frame
//   fetch                     same-origin requests carry "Authorization: Bearer <ID token>";
//                             a 401 with X-Shopify-Retry-Invalid-Session-Request: 1 is retried
//                             once with a new token; a 401 with
//                             X-Shopify-API-Request-Failure-Reauthorize-Url leaves the iframe
//   shopify.toast.show(msg)   a small toast at the bottom of the page
//   shopify.webVitals.onReport(cb)  LCP, CLS, INP, FCP and TTFB of this page, measured with
//                             PerformanceObserver, handed to cb as a WebVitalsReport
//                             ({appId, appLoadId, shopId, userId, path, origin, metrics:
//                             [{id, name, value}]}) after the first interaction and when the
//                             page is hidden (only metrics that changed since the last report)
//   open(url, "_top")         navigates the whole admin window (the parent does it)
//   ?shopify-reload=<path>    (the "patch ID token" page) reloads <path> with a fresh id_token
// The admin is the origin this script was loaded from; see the sandbox's admin-frame.js for
// the other side of the postMessage protocol.
(function () {
  "use strict";
  const script = document.currentScript;
  const adminOrigin = new URL(script.src).origin;
  const apiKeyMeta = document.querySelector('meta[name="shopify-api-key"]');
  const apiKey = script.dataset.apiKey || (apiKeyMeta && apiKeyMeta.content) || "";
  const query = new URLSearchParams(window.location.search);
  const embedded = window.parent !== window;
  const pending = new Map();
  // Set by the admin on every document load; not carried over when re-entering the admin.
  const LAUNCH_PARAMS = ["embedded", "hmac", "host", "id_token", "locale", "session", "shop", "timestamp"];
  let nextId = 1;

  window.addEventListener("message", function (event) {
    if (event.origin !== adminOrigin || event.source !== window.parent) return;
    const data = event.data;
    if (!data || data.source !== "shopify-sandbox-admin" || !pending.has(data.id)) return;
    const waiter = pending.get(data.id);
    pending.delete(data.id);
    if (data.error) waiter.reject(new Error("App Bridge: " + data.error));
    else waiter.resolve(data.idToken);
  });

  function post(message) {
    window.parent.postMessage(
      Object.assign({ source: "shopify-sandbox-app-bridge" }, message),
      adminOrigin
    );
  }

  function idToken() {
    if (!embedded) {
      return Promise.reject(new Error("App Bridge: the app is not embedded in the admin"));
    }
    return new Promise(function (resolve, reject) {
      const id = nextId++;
      pending.set(id, { resolve: resolve, reject: reject });
      post({ type: "id_token_request", id: id });
      setTimeout(function () {
        if (pending.delete(id)) reject(new Error("App Bridge: the admin did not answer"));
      }, 10000);
    });
  }

  function openTop(url) {
    post({ type: "navigate", url: new URL(url, window.location.href).href });
  }

  // fetch: authenticate same-origin requests, as current App Bridge does.
  const nativeFetch = window.fetch.bind(window);
  window.fetch = async function (input, init) {
    const request = new Request(input, init);
    if (!embedded || new URL(request.url).origin !== window.location.origin) {
      return nativeFetch(request);
    }
    const ours = !request.headers.has("Authorization");
    async function attempt() {
      const copy = request.clone();
      if (!ours) return nativeFetch(copy);
      const headers = new Headers(copy.headers);
      headers.set("Authorization", "Bearer " + (await idToken()));
      return nativeFetch(new Request(copy, { headers: headers }));
    }
    let response = await attempt();
    if (
      ours &&
      response.status === 401 &&
      response.headers.get("X-Shopify-Retry-Invalid-Session-Request") === "1"
    ) {
      response = await attempt();
    }
    const reauthorize = response.headers.get("X-Shopify-API-Request-Failure-Reauthorize-Url");
    if (response.status === 401 && reauthorize) openTop(reauthorize);
    return response;
  };

  // window.open: "_top" and "_parent" leave the iframe through the admin.
  const nativeOpen = window.open.bind(window);
  window.open = function (url, target, features) {
    const name = String(target || "").toLowerCase();
    if (embedded && (name === "_top" || name === "_parent")) {
      openTop(String(url));
      return null;
    }
    return nativeOpen(url, target, features);
  };

  function showToast(message, options) {
    const opts = options || {};
    const toast = document.createElement("div");
    toast.setAttribute("role", opts.isError ? "alert" : "status");
    toast.textContent = String(message);
    toast.style.cssText =
      "position:fixed;left:50%;bottom:24px;transform:translateX(-50%);z-index:2147483647;" +
      "padding:10px 16px;border-radius:10px;font:600 13px/1.4 -apple-system,BlinkMacSystemFont," +
      "'Segoe UI',Roboto,sans-serif;color:#fff;box-shadow:0 4px 16px rgba(0,0,0,.25);" +
      "background:" + (opts.isError ? "#c70a24" : "#303030");
    toast.dataset.shopifyToast = "";
    document.body.appendChild(toast);
    setTimeout(function () {
      toast.remove();
    }, opts.duration || 5000);
    return String(Date.now());
  }

  // Web vitals, measured the way the web-vitals library does (simplified: CLS as the largest
  // session window of shifts without recent input, INP as the longest interaction).
  const vitals = { callback: null, values: { CLS: 0 }, sent: {}, loadId: Math.random().toString(36).slice(2) };
  function observe(type, handle, options) {
    try {
      new PerformanceObserver(function (list) { list.getEntries().forEach(handle); })
        .observe(Object.assign({ type: type, buffered: true }, options || {}));
    } catch (error) { /* not supported by this browser */ }
  }
  observe("largest-contentful-paint", function (entry) { vitals.values.LCP = entry.startTime; });
  observe("paint", function (entry) {
    if (entry.name === "first-contentful-paint") vitals.values.FCP = entry.startTime;
  });
  let session = 0, sessionStart = 0, lastShift = 0;
  observe("layout-shift", function (entry) {
    if (entry.hadRecentInput) return;
    if (session && (entry.startTime - lastShift > 1000 || entry.startTime - sessionStart > 5000)) session = 0;
    if (!session) sessionStart = entry.startTime;
    session += entry.value;
    lastShift = entry.startTime;
    vitals.values.CLS = Math.max(vitals.values.CLS, session);
  });
  observe("event", function (entry) {
    if (entry.interactionId) vitals.values.INP = Math.max(vitals.values.INP || 0, entry.duration);
  }, { durationThreshold: 16 });
  const navigation = performance.getEntriesByType("navigation")[0];
  if (navigation) vitals.values.TTFB = navigation.responseStart;
  function reportVitals() {
    if (!vitals.callback) return;
    const metrics = Object.keys(vitals.values)
      .filter(function (name) { return vitals.sent[name] !== vitals.values[name]; })
      .map(function (name) {
        vitals.sent[name] = vitals.values[name];
        return { id: vitals.loadId + "-" + name, name: name, value: vitals.values[name] };
      });
    if (!metrics.length) return;
    Promise.resolve(vitals.callback({
      appId: apiKey, appLoadId: vitals.loadId, shopId: query.get("shop") || "", userId: "",
      path: window.location.pathname, origin: window.location.origin, metrics: metrics,
    })).catch(function () {});
  }
  ["pointerdown", "keydown"].forEach(function (type) {
    // After the first interaction LCP is final; its own INP entry lands a frame later.
    addEventListener(type, function () { setTimeout(reportVitals, 250); }, { once: true, capture: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") reportVitals();
  });
  addEventListener("pagehide", reportVitals);

  window.shopify = {
    config: {
      apiKey: apiKey,
      shop: query.get("shop") || "",
      host: query.get("host") || "",
      locale: query.get("locale") || "en",
    },
    environment: { embedded: embedded, mobile: false, pos: false },
    idToken: idToken,
    toast: { show: showToast },
    webVitals: {
      onReport: function (callback) {
        vitals.callback = callback || null;
        return Promise.resolve();
      },
    },
  };

  // The "patch ID token" page: reload the path it names with a fresh ID token.
  const reload = query.get("shopify-reload");
  if (embedded && reload) {
    const target = new URL(reload, window.location.origin);
    if (target.origin === window.location.origin) {
      idToken().then(function (token) {
        target.searchParams.set("id_token", token);
        window.location.replace(target.href);
      });
    }
  }

  // Opened outside the admin: go to the app's page in the admin, as App Bridge does.
  if (!embedded && query.get("shop") && apiKey) {
    const handle = query.get("shop").replace(/\.myshopify\.com$/, "");
    const path = window.location.pathname.replace(/^\/+/, "");
    const kept = new URLSearchParams();
    query.forEach(function (value, key) {
      if (!LAUNCH_PARAMS.includes(key)) kept.append(key, value);
    });
    const search = kept.toString();
    window.location.replace(
      adminOrigin + "/store/" + encodeURIComponent(handle) + "/apps/" +
        encodeURIComponent(apiKey) + (path ? "/" + path : "") + (search ? "?" + search : "")
    );
  }
})();
