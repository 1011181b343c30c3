// The sandbox admin's side of the App Bridge stand-in (see app-bridge.js for the app's side).
//
// The app in the iframe asks, by postMessage, for
//   {source: "shopify-sandbox-app-bridge", type: "id_token_request", id}
//     -> the admin fetches a fresh ID token from the sandbox and answers
//        {source: "shopify-sandbox-admin", type: "id_token", id, idToken} or {..., id, error};
//   {source: "shopify-sandbox-app-bridge", type: "navigate", url}
//     -> the admin navigates the whole window (breaking out of the iframe).
// Messages are accepted only from the iframe's window at the app's origin, and answers are
// posted to that origin only, so no other page can obtain a token.
(function () {
  "use strict";
  const frame = document.getElementById("app-frame");
  const appOrigin = frame.dataset.appOrigin;
  const tokenUrl = frame.dataset.tokenUrl;
  const csrfToken = frame.dataset.csrfToken;

  function reply(message) {
    frame.contentWindow.postMessage(
      Object.assign({ source: "shopify-sandbox-admin" }, message),
      appOrigin
    );
  }

  async function answerIdToken(id) {
    try {
      const response = await fetch(tokenUrl, {
        method: "POST",
        headers: { "X-CSRF-Token": csrfToken },
        credentials: "same-origin",
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
      reply({ type: "id_token", id: id, idToken: body.id_token });
    } catch (error) {
      reply({ type: "id_token", id: id, error: String(error.message || error) });
    }
  }

  function navigate(url) {
    let target;
    try {
      target = new URL(url, appOrigin);
    } catch (error) {
      return;
    }
    if (target.protocol === "http:" || target.protocol === "https:") {
      window.location.assign(target.href);
    }
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== appOrigin || event.source !== frame.contentWindow) return;
    const data = event.data;
    if (!data || data.source !== "shopify-sandbox-app-bridge") return;
    if (data.type === "id_token_request") answerIdToken(data.id);
    else if (data.type === "navigate") navigate(data.url);
  });
})();
