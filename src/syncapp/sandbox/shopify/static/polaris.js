// A stand-in for https://cdn.shopify.com/shopifycloud/polaris.js, served by the Shopify sandbox:
// light versions of the Polaris web components an app home uses, each a custom element with a
// shadow root, styled after the Shopify admin. Content stays in the light DOM (slots), so the
// app's text, links and form fields behave as ordinary HTML.
//   s-page heading · s-section heading · s-heading · s-text type/tone/color · s-paragraph
//   s-banner heading/tone/dismissible · s-button variant/tone/href/target/type/disabled/loading
//   s-badge tone · s-stack direction/gap/padding/alignItems/justifyContent · s-box padding/
//   background/border/borderRadius · s-link href/target · s-spinner size · s-divider
//   s-unordered-list / s-list-item · s-text-field label/name/value/placeholder/details/error/
//   required/disabled (form-associated: its value posts with a <form>; .value as on Polaris)
(function () {
  "use strict";
  const FONT = "-apple-system,BlinkMacSystemFont,'San Francisco','Segoe UI',Roboto,sans-serif";
  const SPACE = {
    none: "0", "small-500": "2px", "small-400": "4px", "small-300": "6px", "small-200": "8px",
    "small-100": "10px", small: "8px", base: "12px", "large-100": "16px", large: "16px",
    "large-200": "20px", "large-300": "24px", "large-400": "32px", "large-500": "40px",
  };
  const TONES = {
    info: ["#eaf4ff", "#00527c", "#91d0ff"],
    success: ["#cdfee1", "#0c5132", "#7ae8a9"],
    warning: ["#fff1e3", "#5e4200", "#ffb800"],
    caution: ["#fff8db", "#4f4700", "#ffe600"],
    critical: ["#fee9e8", "#8e0b21", "#fd8282"],
    neutral: ["#f1f1f1", "#303030", "#d4d4d4"],
  };
  const toneOf = (el, fallback) => TONES[el.getAttribute("tone")] ? el.getAttribute("tone") : fallback;
  const attr = (el, ...names) => names.map((n) => el.getAttribute(n)).find((v) => v !== null);
  const space = (value) => (value || "").split(/\s+/).filter(Boolean).map((v) => SPACE[v] || "0").join(" ");
  const escape = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  // Links that leave the iframe go through App Bridge's window.open, as in the real admin.
  function follow(event, href, target) {
    const name = (target || "").toLowerCase();
    if (name === "_top" || name === "_parent") {
      event.preventDefault();
      window.open(href, name);
    }
  }

  function define(name, observed, render, setup) {
    customElements.define(name, class extends HTMLElement {
      static get observedAttributes() { return observed; }
      connectedCallback() {
        if (!this.shadowRoot) {
          this.attachShadow({ mode: "open" });
          if (setup) setup(this);
        }
        this.shadowRoot.innerHTML = render(this);
      }
      attributeChangedCallback() { if (this.shadowRoot) this.shadowRoot.innerHTML = render(this); }
    });
  }

  const base = `:host{font-family:${FONT};font-size:13px;line-height:20px;color:#303030}`;

  define("s-page", ["heading", "inline-size", "inlinesize"], (el) => {
    const width = { small: "640px", large: "1200px" }[attr(el, "inline-size", "inlinesize")] || "998px";
    const heading = el.getAttribute("heading");
    return `<style>${base}:host{display:block;background:#f1f1f1;min-height:100%}
      .page{max-width:${width};margin:0 auto;padding:16px 24px 32px}
      header{display:flex;align-items:center;gap:8px;margin:4px 0 16px}
      h1{flex:1;margin:0;font-size:20px;line-height:28px;font-weight:700}
      .body{display:grid;gap:16px;grid-template-columns:minmax(0,1fr)}
      .main{display:grid;gap:16px;align-content:start}
      @media(min-width:900px){.body.has-aside{grid-template-columns:minmax(0,2fr) minmax(0,1fr)}}
      .aside{display:grid;gap:16px;align-content:start}</style>
      <div class="page">${heading ? `<header><h1>${escape(heading)}</h1>` +
        `<slot name="secondary-actions"></slot><slot name="primary-action"></slot></header>` : ""}
      <div class="body ${el.querySelector(":scope > [slot=aside]") ? "has-aside" : ""}">
      <div class="main"><slot></slot></div><div class="aside"><slot name="aside"></slot></div></div></div>`;
  });

  define("s-section", ["heading", "padding"], (el) => {
    const nested = el.parentElement && el.parentElement.closest("s-section");
    const heading = el.getAttribute("heading");
    const card = nested ? "" : "background:#fff;border-radius:12px;box-shadow:0 1px 0 rgba(26,26,26,.07),inset 0 0 0 1px rgba(26,26,26,.06);";
    const pad = el.getAttribute("padding") === "none" ? "0" : nested ? "0" : "16px";
    return `<style>${base}:host{display:block}section{${card}padding:${pad};display:grid;gap:12px}
      h2{margin:0;font-size:${nested ? "13px" : "14px"};line-height:20px;font-weight:650}</style>
      <section>${heading ? `<h2>${escape(heading)}</h2>` : ""}<slot></slot></section>`;
  });

  define("s-heading", [], () =>
    `<style>${base}:host{display:block}h2{margin:0;font-size:14px;font-weight:650}</style><h2 part="heading"><slot></slot></h2>`);

  const textColor = (el) => {
    const tone = el.getAttribute("tone");
    if (TONES[tone] && tone !== "neutral") return TONES[tone][1];
    return el.getAttribute("color") === "subdued" ? "#616161" : "inherit";
  };

  define("s-text", ["type", "tone", "color"], (el) => {
    const weight = el.getAttribute("type") === "strong" ? 650 : "inherit";
    return `<style>${base}:host{display:inline;color:${textColor(el)};font-weight:${weight}}</style><slot></slot>`;
  });

  define("s-paragraph", ["tone", "color"], (el) =>
    `<style>${base}:host{display:block;color:${textColor(el)}}p{margin:0}</style><p><slot></slot></p>`);

  define("s-banner", ["heading", "tone", "dismissible"], (el) => {
    const [bg, fg, edge] = TONES[toneOf(el, "info")];
    const heading = el.getAttribute("heading");
    const role = ["critical", "warning"].includes(el.getAttribute("tone")) ? "alert" : "status";
    const close = el.hasAttribute("dismissible") ? `<button aria-label="Dismiss">×</button>` : "";
    return `<style>${base}:host{display:block}
      div{background:${bg};color:${fg};border-radius:12px;padding:12px 16px;box-shadow:inset 0 3px 0 ${edge};
        display:flex;gap:8px;align-items:flex-start}
      .content{flex:1;display:grid;gap:4px}strong{font-weight:650}
      button{border:0;background:none;font-size:18px;line-height:18px;cursor:pointer;color:${fg}}</style>
      <div role="${role}"><span class="content">${heading ? `<strong>${escape(heading)}</strong>` : ""}<slot></slot></span>${close}</div>`;
  }, (el) => el.shadowRoot.addEventListener("click", (event) => {
    if (event.target.tagName === "BUTTON") {
      el.hidden = true;
      el.dispatchEvent(new Event("dismiss", { bubbles: true }));
    }
  }));

  define("s-button", ["variant", "tone", "href", "target", "type", "disabled", "loading"], (el) => {
    const variant = el.getAttribute("variant") || "secondary";
    const critical = el.getAttribute("tone") === "critical";
    const disabled = el.hasAttribute("disabled") || el.hasAttribute("loading");
    const look = {
      primary: critical ? "background:#c70a24;color:#fff;box-shadow:inset 0 -1px 0 #8e0b21"
        : "background:#303030;color:#fff;box-shadow:inset 0 -1px 0 #000,inset 0 1px 0 rgba(255,255,255,.2)",
      secondary: `background:#fff;color:${critical ? "#8e0b21" : "#303030"};box-shadow:inset 0 0 0 1px #c9c9c9,inset 0 -1px 0 #b5b5b5`,
      tertiary: `background:transparent;color:${critical ? "#8e0b21" : "#303030"}`,
      auto: "background:#fff;color:#303030;box-shadow:inset 0 0 0 1px #c9c9c9,inset 0 -1px 0 #b5b5b5",
    }[variant] || "";
    const spinner = el.hasAttribute("loading") ? `<span class="spin" aria-hidden="true"></span>` : "";
    const style = `<style>${base}:host{display:inline-block}
      .b{${look};font:650 13px/20px ${FONT};border:0;border-radius:8px;padding:6px 12px;cursor:pointer;
        text-decoration:none;display:inline-flex;gap:6px;align-items:center}
      .b:hover{filter:brightness(.94)}.b:focus-visible{outline:2px solid #005bd3;outline-offset:1px}
      .b[aria-disabled=true],.b:disabled{opacity:.5;cursor:default;filter:none}
      .spin{width:12px;height:12px;border:2px solid currentColor;border-right-color:transparent;border-radius:50%;
        animation:r .8s linear infinite}@keyframes r{to{transform:rotate(360deg)}}</style>`;
    const href = el.getAttribute("href");
    if (href && !disabled) {
      const target = el.getAttribute("target");
      return `${style}<a class="b" part="button" href="${escape(href)}"${target ? ` target="${escape(target)}"` : ""}>${spinner}<slot></slot></a>`;
    }
    return `${style}<button class="b" part="button" type="button"${disabled ? " disabled" : ""}>${spinner}<slot></slot></button>`;
  }, (el) => el.shadowRoot.addEventListener("click", (event) => {
    const link = event.composedPath().find((node) => node.tagName === "A");
    if (link) return follow(event, link.href, link.getAttribute("target"));
    const type = el.getAttribute("type");
    const form = el.closest("form");
    if (form && type === "submit") form.requestSubmit();
    else if (form && type === "reset") form.reset();
  }));

  define("s-link", ["href", "target", "tone"], (el) => {
    const href = el.getAttribute("href") || "";
    const target = el.getAttribute("target");
    const color = el.getAttribute("tone") === "critical" ? "#8e0b21" : "#005bd3";
    return `<style>${base}:host{display:inline}a{color:${color};text-decoration:underline;cursor:pointer}
      a:hover{color:#004299}</style><a part="link" href="${escape(href)}"${target ? ` target="${escape(target)}"` : ""}><slot></slot></a>`;
  }, (el) => el.shadowRoot.addEventListener("click", (event) =>
    follow(event, el.shadowRoot.querySelector("a").href, el.getAttribute("target"))));

  define("s-badge", ["tone"], (el) => {
    const [bg, fg] = TONES[toneOf(el, "neutral")];
    return `<style>${base}:host{display:inline-block}span{display:inline-block;background:${bg};color:${fg};
      border-radius:8px;padding:2px 8px;font-size:12px;line-height:16px;font-weight:550}</style><span><slot></slot></span>`;
  });

  define("s-stack", ["direction", "gap", "padding", "alignitems", "align-items", "justifycontent", "justify-content"], (el) => {
    const inline = el.getAttribute("direction") === "inline";
    return `<style>${base}:host{display:flex;flex-direction:${inline ? "row" : "column"};flex-wrap:${inline ? "wrap" : "nowrap"};
      gap:${space(el.getAttribute("gap")) || "0"};padding:${space(el.getAttribute("padding")) || "0"};
      align-items:${attr(el, "alignitems", "align-items") || (inline ? "center" : "stretch")};
      justify-content:${attr(el, "justifycontent", "justify-content") || "flex-start"}}</style><slot></slot>`;
  });

  define("s-box", ["padding", "background", "border", "borderradius", "border-radius"], (el) => {
    const bg = { base: "#fff", subdued: "#f7f7f7", strong: "#f1f1f1" }[el.getAttribute("background")] || "transparent";
    const border = el.getAttribute("border") ? "1px solid #e3e3e3" : "0";
    const radius = { base: "8px", large: "12px", small: "4px", "large-100": "16px" }[attr(el, "borderradius", "border-radius")] || "0";
    return `<style>${base}:host{display:block;padding:${space(el.getAttribute("padding")) || "0"};background:${bg};
      border:${border};border-radius:${radius}}</style><slot></slot>`;
  });

  define("s-spinner", ["size", "accessibilitylabel"], (el) => {
    const size = el.getAttribute("size") === "large" ? 44 : 20;
    const label = el.getAttribute("accessibilityLabel") || "Loading";
    return `<style>:host{display:inline-block}span{display:block;width:${size}px;height:${size}px;border-radius:50%;
      border:${size > 20 ? 4 : 3}px solid #e3e3e3;border-top-color:#303030;animation:r .9s linear infinite}
      @keyframes r{to{transform:rotate(360deg)}}</style><span role="status" aria-label="${escape(label)}"></span>`;
  });

  define("s-divider", [], () =>
    `<style>:host{display:block}hr{border:0;border-top:1px solid #e3e3e3;margin:0}</style><hr>`);

  define("s-unordered-list", [], () =>
    `<style>${base}:host{display:block}ul{margin:0;padding-left:20px;display:grid;gap:4px}</style><ul role="list"><slot></slot></ul>`);

  define("s-list-item", [], () =>
    `<style>${base}:host{display:list-item}</style><slot></slot>`);
  // A text field keeps its <input> across attribute changes (re-rendering would drop what the
  // merchant typed and the focus), so it is not built with define().
  let fieldCount = 0;
  customElements.define("s-text-field", class extends HTMLElement {
    static get formAssociated() { return true; }
    static get observedAttributes() {
      return ["label", "name", "value", "placeholder", "details", "error", "required", "disabled"];
    }
    constructor() {
      super();
      this._internals = this.attachInternals ? this.attachInternals() : null;
      this._value = this.getAttribute("value") || "";
    }
    connectedCallback() {
      if (this.shadowRoot) return;
      const id = `f${++fieldCount}`;
      this.attachShadow({ mode: "open", delegatesFocus: true });
      this.shadowRoot.innerHTML = `<style>${base}:host{display:block;min-width:0}
        label{display:block;margin-bottom:4px}input{box-sizing:border-box;width:100%;min-height:32px;
        font:13px/20px ${FONT};color:#303030;padding:5px 12px;border:1px solid #8a8a8a;border-radius:8px;background:#fdfdfd}
        input:focus{outline:2px solid #005bd3;outline-offset:1px}input:disabled{background:#f7f7f7;color:#b5b5b5}
        input[aria-invalid=true]{border-color:#c70a24;background:#fee9e8}.details{color:#616161}.error{color:#8e0b21}
        </style><label for="${id}"></label><input id="${id}" type="text"><div class="details"></div>
        <div class="error" role="alert"></div>`;
      this._input = this.shadowRoot.querySelector("input");
      this._input.value = this._value;
      this._input.addEventListener("input", () => {
        this._value = this._input.value;
        this._sync();
        this.dispatchEvent(new Event("input", { bubbles: true }));
      });
      this._input.addEventListener("change", () => this.dispatchEvent(new Event("change", { bubbles: true })));
      this._render();
    }
    attributeChangedCallback(name) {
      if (name === "value") this.value = this.getAttribute("value") || "";
      this._render();
    }
    get value() { return this._value; }
    set value(text) {
      this._value = String(text == null ? "" : text);
      if (this._input && this._input.value !== this._value) this._input.value = this._value;
      this._sync();
    }
    get name() { return this.getAttribute("name") || ""; }
    focus() { if (this._input) this._input.focus(); }
    _sync() { if (this._internals) this._internals.setFormValue(this._value); }
    _render() {
      if (!this._input) return;
      const root = this.shadowRoot;
      root.querySelector("label").textContent = this.getAttribute("label") || "";
      root.querySelector(".details").textContent = this.getAttribute("details") || "";
      const error = this.getAttribute("error") || "";
      root.querySelector(".error").textContent = error;
      this._input.setAttribute("aria-invalid", error ? "true" : "false");
      this._input.placeholder = this.getAttribute("placeholder") || "";
      this._input.required = this.hasAttribute("required");
      this._input.disabled = this.hasAttribute("disabled");
      this._input.name = this.name;
      this._sync();
    }
  });
})();
