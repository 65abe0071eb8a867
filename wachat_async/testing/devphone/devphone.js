// The dev phone page of the Wachat sandbox. Plain JavaScript, no build step, nothing fetched
// from elsewhere. Every text that comes from the server or a user goes in through textContent
// (see el()); nothing is ever parsed as HTML. User text (names, numbers, messages) sits in
// <bdi> wherever other text is beside it (see user()), so a right-to-left override in a push
// name cannot reorder the number drawn after it.
//
// It follows the sandbox through GET /_sandbox/events (Server-Sent Events), read with fetch()
// rather than EventSource so that the API key, when the sandbox needs one, travels in the
// Authorization header like every other request, and never in a URL.
"use strict";

(() => {
  const CONTROL = new URL("../", document.baseURI); // /_sandbox/
  const KEY_STORE = "wachat-devphone-key";
  const MAX_DELIVERIES = 200;
  const RECONNECT_MS = [500, 1000, 2000, 5000];

  const $ = (id) => document.getElementById(id);
  const ui = {
    live: $("live"),
    forgetKey: $("forget-key"),
    keyForm: $("key-form"),
    key: $("key"),
    keyError: $("key-error"),
    main: $("main"),
    noInstances: $("no-instances"),
    instanceList: $("instance-list"),
    instanceCount: $("instance-count"),
    instancesToggle: $("instances-toggle"),
    chat: $("chat"),
    chatHeading: $("chat-heading"),
    chatSub: $("chat-sub"),
    messages: $("messages"),
    reply: $("reply"),
    replyFrom: $("reply-from"),
    replyText: $("reply-text"),
    replySend: $("reply-send"),
    replyError: $("reply-error"),
    noDeliveries: $("no-deliveries"),
    deliveryTable: $("delivery-table"),
    deliveryRows: $("delivery-rows"),
  };

  /** api name -> {view, messages: [{direction, message}], ids: Set, card: {...}} */
  const instances = new Map();
  let selected = null;
  let fromTouched = false;
  let apiKey = sessionStorage.getItem(KEY_STORE) || "";

  // -- small helpers ---------------------------------------------------------------------------

  /** An element; text goes in as textContent, never as HTML. */
  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  /** User text beside other text: isolated (<bdi>), so its direction marks stay inside. */
  const user = (text, props = {}) => el("bdi", { ...props, text });
  /** A phone number, drawn left to right whatever surrounds it. */
  const phone = (number) => el("bdi", { class: "number", dir: "ltr", text: `+${number}` });

  // WhatsApp's formatting: *bold*, _italic_, ~strike~ and ```mono```. A marker opens after the
  // start, a space or punctuation and before a non-space, and closes after a non-space before
  // the end, a space or punctuation; the text between is formatted (and may hold others).
  const MONO = /```([\s\S]+?)```/;
  const STYLED = /(^|[\s.,:;!?()"'\[\]{}-])([*_~])(?=\S)([\s\S]*?\S)\2(?=$|[\s.,:;!?()"'\[\]{}-])/;
  const STYLE_TAG = { "*": "strong", _: "em", "~": "s" };

  /** ``text`` as WhatsApp draws it: DOM nodes (text stays text), never HTML. */
  function formatted(text) {
    const out = document.createDocumentFragment();
    let rest = String(text);
    while (rest) {
      const mono = MONO.exec(rest);
      const styled = STYLED.exec(rest);
      const monoAt = mono ? mono.index : Infinity;
      const styledAt = styled ? styled.index + styled[1].length : Infinity;
      if (monoAt === Infinity && styledAt === Infinity) {
        out.append(rest);
        break;
      }
      if (monoAt <= styledAt) {
        out.append(rest.slice(0, monoAt), el("code", { class: "mono", text: mono[1] }));
        rest = rest.slice(monoAt + mono[0].length);
      } else {
        const node = el(STYLE_TAG[styled[2]]);
        node.append(formatted(styled[3]));
        out.append(rest.slice(0, styledAt), node);
        rest = rest.slice(styled.index + styled[0].length);
      }
    }
    return out;
  }

  /** A message's text paragraph, formatted, in the direction of its first strong letter. */
  function textParagraph(text, cls = "text") {
    const node = el("p", { class: cls, dir: "auto" });
    node.append(formatted(text || ""));
    return node;
  }

  /** ``value`` when it is an http(s) URL, else null (no javascript:, data: or relative URLs). */
  function webUrl(value) {
    if (typeof value !== "string") return null;
    try {
      const url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  /** Texts and nodes with " · " between them (empty ones left out). */
  function joined(parts) {
    const out = [];
    for (const part of parts.filter(Boolean)) {
      if (out.length) out.push(" · ");
      out.push(part);
    }
    return out;
  }

  const str = (value) => (typeof value === "string" && value.trim() ? value : null);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function clock(at) {
    const date = new Date(at * 1000);
    const node = el("time", {
      datetime: date.toISOString(),
      text: date.toLocaleTimeString([], {
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23",
      }),
    });
    return node;
  }

  function fileNameOf(url) {
    try {
      const last = new URL(url).pathname.split("/").filter(Boolean).pop();
      return last ? decodeURIComponent(last) : null;
    } catch {
      return null;
    }
  }

  // -- talking to the sandbox ------------------------------------------------------------------

  function headers(extra = {}) {
    return apiKey ? { ...extra, Authorization: `Bearer ${apiKey}` } : extra;
  }

  /** A control request; its JSON answer, or an Error with the sandbox's words. */
  async function control(method, path, body) {
    const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    const resp = await fetch(new URL(path, CONTROL), init);
    let data = null;
    try {
      data = await resp.json();
    } catch {
      // not JSON: reported below by status
    }
    if (resp.status === 401) {
      askForKey(apiKey ? "That API key was refused." : "");
    }
    if (!resp.ok || !data || data.success !== true) {
      throw new Error((data && data.error) || `HTTP ${resp.status}`);
    }
    return data;
  }

  const act = (path, body) => control("POST", path, body);
  const instancePath = (name, action) => `instances/${encodeURIComponent(name)}/${action}`;

  // -- the event stream ------------------------------------------------------------------------

  let streamGeneration = 0;
  let streamAbort = null;

  function setLive(state, text) {
    ui.live.dataset.live = state;
    ui.live.textContent = text;
  }

  function restartStream() {
    streamGeneration += 1;
    if (streamAbort) streamAbort.abort();
    follow(streamGeneration);
  }

  async function follow(generation) {
    let failures = 0;
    while (generation === streamGeneration) {
      const abort = new AbortController();
      streamAbort = abort;
      try {
        setLive("connecting", failures ? "Reconnecting…" : "Connecting…");
        const resp = await fetch(new URL("events", CONTROL), {
          headers: headers({ Accept: "text/event-stream" }),
          cache: "no-store",
          signal: abort.signal,
        });
        if (resp.status === 401) {
          setLive("locked", "Locked: API key needed");
          askForKey(apiKey ? "That API key was refused." : "");
          return; // the key form starts a new stream
        }
        if (resp.status === 503) {
          setLive("offline", "Too many dev phone tabs open: waiting for one to close…");
          await sleep(RECONNECT_MS[RECONNECT_MS.length - 1]);
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        await readEvents(resp.body, (kind, data) => {
          failures = 0;
          handle(kind, data);
        });
      } catch (err) {
        if (abort.signal.aborted) return;
      }
      if (generation !== streamGeneration) return;
      setLive("offline", "Sandbox unreachable: retrying…");
      await sleep(RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)]);
      failures += 1;
    }
  }

  /** Parse a text/event-stream body, calling onEvent(kind, data) for each event. */
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let kind = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let val = colon === -1 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") kind = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
      }
    }
  }

  function handle(kind, data) {
    switch (kind) {
      case "snapshot":
        applySnapshot(data);
        setLive("live", "Live");
        break;
      case "instance":
        upsertInstance(data.instance);
        break;
      case "instance.deleted":
        removeInstance(data.api_name);
        break;
      case "message":
        addMessage(data.instance, { direction: data.direction, message: data.message }, true);
        break;
      case "receipt":
        applyReceipt(data.instance, data.id, data.status);
        break;
      case "delivery":
        addDelivery(data.delivery);
        break;
      default:
        break; // "reset" and kinds this page does not know: the stream ends or goes on
    }
  }

  // -- the key ---------------------------------------------------------------------------------

  function askForKey(problem) {
    ui.keyForm.hidden = false;
    ui.main.inert = true;
    ui.keyError.textContent = problem || "";
    ui.forgetKey.hidden = true;
    ui.key.focus();
  }

  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = ui.key.value.trim();
    if (!apiKey) return;
    sessionStorage.setItem(KEY_STORE, apiKey);
    ui.key.value = "";
    ui.keyForm.hidden = true;
    ui.main.inert = false;
    ui.forgetKey.hidden = false;
    restartStream();
  });

  ui.forgetKey.addEventListener("click", () => {
    apiKey = "";
    sessionStorage.removeItem(KEY_STORE);
    ui.forgetKey.hidden = true;
    restartStream();
  });

  // -- instances -------------------------------------------------------------------------------

  function applySnapshot(data) {
    const present = new Set(data.instances.map((view) => view.api_name));
    const kept = selected && present.has(selected) ? selected : null;
    for (const name of [...instances.keys()]) if (!present.has(name)) removeInstance(name);
    for (const view of data.instances) {
      upsertInstance(view);
      const entry = instances.get(view.api_name);
      entry.messages = [];
      entry.ids = new Set();
      const all = [
        ...view.sent.map((message) => ({ direction: "out", message })),
        ...view.received.map((message) => ({ direction: "in", message })),
      ].sort((a, b) => a.message.at - b.message.at);
      for (const item of all) addMessage(view.api_name, item, false);
    }
    // The chat shown stays; else the newest instance's (on top of the list).
    selected = kept || (data.instances.length ? data.instances[data.instances.length - 1].api_name : null);
    ui.deliveryRows.replaceChildren();
    for (const delivery of data.deliveries) addDelivery(delivery);
    refreshSelection();
    renderChat();
  }

  const STATE_LABEL = { connecting: "waiting for a scan", open: "connected", close: "disconnected" };

  function makeCard(view) {
    const id = `inst-${instances.size}-${Math.random().toString(36).slice(2, 8)}`;
    const card = {};
    card.heading = el("h3", { id: `${id}-h` });
    card.apiName = el("p", { class: "api-name" });
    card.badge = el("span", { class: "badge" });
    card.detail = el("span", { class: "state-detail" });
    card.qrImg = el("img", { class: "qr-img", width: 164, height: 164 });
    card.qrCaption = el("figcaption");
    card.qr = el("figure", { class: "qr" }, [card.qrImg, card.qrCaption]);
    card.scan = el("button", { type: "button", class: "primary", text: "Scan with phone" });
    card.disconnect = el("button", { type: "button", text: "Disconnect" });
    card.open = el("button", { type: "button", class: "quiet open-chat", text: "Open chat" });
    card.error = el("p", { class: "error", role: "alert" });
    card.root = el("li", { class: "card" }, [
      el("article", { "aria-labelledby": card.heading.id }, [
        card.heading,
        card.apiName,
        el("p", { class: "state" }, [card.badge, card.detail]),
        card.qr,
        el("div", { class: "actions" }, [card.scan, card.disconnect, card.open]),
        card.error,
      ]),
    ]);
    card.scan.addEventListener("click", () => cardAction(view.api_name, "scan", card.disconnect));
    card.disconnect.addEventListener("click", () => cardAction(view.api_name, "disconnect", card.scan));
    card.open.addEventListener("click", () => {
      select(view.api_name);
      if (narrow.matches) ui.chat.scrollIntoView({ block: "start" });
    });
    card.root.addEventListener("click", (event) => {
      if (!event.target.closest("button")) select(view.api_name);
    });
    return card;
  }

  async function cardAction(name, action, focusAfter) {
    const entry = instances.get(name);
    if (!entry) return;
    entry.card.error.textContent = "";
    try {
      const answer = await act(instancePath(name, action));
      upsertInstance(answer.instance);
      if (document.activeElement === document.body || document.activeElement.disabled) {
        focusAfter.focus();
      }
    } catch (err) {
      entry.card.error.textContent = `${action === "scan" ? "Scan" : "Disconnect"} failed: ${err.message}`;
    }
  }

  function upsertInstance(view) {
    let entry = instances.get(view.api_name);
    if (!entry) {
      entry = { view, messages: [], ids: new Set(), card: makeCard(view) };
      instances.set(view.api_name, entry);
      ui.instanceList.prepend(entry.card.root); // the newest on top, where the eye is
      ui.instanceCount.textContent = String(instances.size);
      if (!selected) {
        selected = view.api_name;
        refreshSelection();
        renderChat();
      }
    }
    entry.view = view;
    const card = entry.card;
    const focused = document.activeElement;
    card.root.dataset.state = view.state;
    card.heading.replaceChildren(user(view.display_name));
    card.apiName.textContent = view.api_name;
    card.badge.textContent = view.state;
    card.detail.replaceChildren(...joined([
      STATE_LABEL[view.state] || "",
      view.number ? phone(view.number) : "",
      view.profile_name && view.state === "open" ? user(view.profile_name, { class: "profile" }) : "",
    ]));
    const qr = view.qrcode && /^data:image\/png;base64,/.test(view.qrcode.base64) ? view.qrcode : null;
    card.qr.hidden = !qr;
    if (qr && card.qrImg.getAttribute("src") !== qr.base64) {
      card.qrImg.src = qr.base64;
      card.qrImg.alt = `QR code ${qr.count} to link ${view.display_name}`;
      card.qrCaption.textContent = `QR code ${qr.count}: it rotates until a phone scans it`;
    }
    // A connected instance has nothing to scan, and one not connected nothing to disconnect.
    card.scan.hidden = card.scan.disabled = view.state === "open";
    card.disconnect.hidden = card.disconnect.disabled = view.state !== "open";
    // A pressed button that just became disabled would drop the focus to the page: keep it
    // in the card, on the button that undoes what was just done.
    if (focused === card.scan && card.scan.disabled) card.disconnect.focus();
    if (focused === card.disconnect && card.disconnect.disabled) card.scan.focus();
    ui.noInstances.hidden = instances.size > 0;
    if (view.api_name === selected) renderChatHead();
  }

  function removeInstance(name) {
    const entry = instances.get(name);
    if (!entry) return;
    entry.card.root.remove();
    instances.delete(name);
    ui.instanceCount.textContent = String(instances.size);
    ui.noInstances.hidden = instances.size > 0;
    if (selected === name) {
      selected = instances.size ? instances.keys().next().value : null;
      refreshSelection();
      renderChat();
    }
  }

  function select(name) {
    if (selected === name) {
      readChat(name); // opened again: what came since is read too
      return;
    }
    selected = name;
    fromTouched = false;
    refreshSelection();
    renderChat();
    readChat(name);
  }

  // -- receipts: the customer's phone ticks ----------------------------------------------------

  /** A sent message's ticks: one (sent), two (delivered), two blue (read), or failed. */
  const TICKS = { sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };

  function ticks(status) {
    const shown = TICKS[status] ? status : "sent";
    return el("span", { class: `ticks ${shown}`, title: shown, "data-status": shown }, [
      el("span", { "aria-hidden": "true", text: TICKS[shown] }),
      el("span", { class: "visually-hidden", text: ` (${shown})` }),
    ]);
  }

  function applyReceipt(name, id, status) {
    const entry = instances.get(name);
    if (!entry) return;
    const item = entry.messages.find((m) => m.direction === "out" && m.message.id === id);
    if (!item) return;
    item.message.status = status;
    if (name !== selected) return;
    for (const node of ui.messages.querySelectorAll("li.msg.out")) {
      if (node.dataset.id === id) node.querySelector(".ticks").replaceWith(ticks(status));
    }
  }

  /** Opening a chat is the customers reading it: what they were sent and did not read yet is
   * read, and the sandbox sends the read receipts. */
  async function readChat(name) {
    const entry = instances.get(name);
    if (!entry || entry.view.state !== "open") return;
    const unread = new Set();
    for (const { direction, message } of entry.messages) {
      const status = message.status || "sent";
      if (direction === "out" && (status === "sent" || status === "delivered")) {
        const number = message.body && message.body.number;
        if (str(number)) unread.add(number);
      }
    }
    for (const number of unread) {
      try {
        await act(instancePath(name, "read"), { number });
      } catch {
        // the instance went away meanwhile: its ticks stay as they are
      }
    }
  }

  function refreshSelection() {
    for (const [name, entry] of instances) {
      const on = name === selected;
      entry.card.root.classList.toggle("selected", on);
      entry.card.open.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  // -- the chat --------------------------------------------------------------------------------

  function renderChatHead() {
    const entry = selected && instances.get(selected);
    if (!entry) {
      ui.chatHeading.textContent = "Chat";
      ui.chatSub.textContent = "Pick an instance to see its messages.";
      return;
    }
    const view = entry.view;
    ui.chatHeading.replaceChildren("Chat: ", user(view.display_name));
    ui.chatSub.replaceChildren(...joined([
      view.state === "open" ? "connected" : STATE_LABEL[view.state] || view.state,
      view.number ? phone(view.number) : "",
      "your bot's sends on the right, the customer on the left",
    ]));
  }

  function renderChat() {
    renderChatHead();
    const entry = selected && instances.get(selected);
    ui.messages.setAttribute("aria-busy", "true");
    ui.messages.replaceChildren();
    for (const field of [ui.replyFrom, ui.replyText, ui.replySend]) field.disabled = !entry;
    if (entry) {
      if (!entry.messages.length) {
        ui.messages.append(el("li", { class: "day-note", text: "No messages yet" }));
      }
      for (const item of entry.messages) ui.messages.append(renderMessage(item));
      suggestFrom(entry);
    }
    ui.messages.removeAttribute("aria-busy");
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function addMessage(name, item, live) {
    const entry = instances.get(name);
    if (!entry || entry.ids.has(item.message.id)) return;
    entry.ids.add(item.message.id);
    entry.messages.push(item);
    if (!live || name !== selected) return;
    const nearBottom =
      ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
    const note = ui.messages.querySelector(".day-note");
    if (note) note.remove();
    ui.messages.append(renderMessage(item));
    if (nearBottom || item.direction === "in") ui.messages.scrollTop = ui.messages.scrollHeight;
    suggestFrom(entry);
  }

  /** Fill the "from" box with the customer last talked to, unless the user typed there. */
  function suggestFrom(entry) {
    if (fromTouched) return;
    for (let i = entry.messages.length - 1; i >= 0; i -= 1) {
      const { direction, message } = entry.messages[i];
      const number = direction === "in" ? message.from : message.body && message.body.number;
      if (str(number)) {
        ui.replyFrom.value = number;
        return;
      }
    }
  }

  function renderMessage({ direction, message }) {
    const bubble = el("div", { class: "bubble" });
    let party;
    if (direction === "in") {
      party = message.from;
      const sender = el("p", { class: "sender" });
      sender.append(...joined([
        str(message.push_name) && message.push_name !== message.from
          ? user(message.push_name, { class: "push-name" })
          : "",
        phone(message.from),
      ]));
      bubble.append(sender, textParagraph(message.text));
    } else {
      party = message.body && message.body.number;
      renderSent(bubble, message);
    }
    const meta = el("p", { class: "meta" }, [
      direction === "in"
        ? el("span", { class: "party", text: "customer" })
        : el("span", { class: "party" }, ["to ", phone(party)]),
      clock(message.at),
    ]);
    if (direction === "out") meta.append(ticks(message.status));
    bubble.append(meta);
    const item = el("li", { class: `msg ${direction}`, "data-id": message.id }, [
      el("span", { class: "visually-hidden", text: direction === "in" ? "Customer said:" : "Bot sent:" }),
      bubble,
    ]);
    if (direction === "out" && message.path === "/send/button") {
      item.append(renderReplyButtons(message));
    }
    return item;
  }

  function renderSent(bubble, message) {
    const body = message.body || {};
    const path = message.path;
    if ((path === "/send/text" || path === "/send") && body.type === "text") {
      bubble.append(textParagraph(body.message));
    } else if (path === "/send/media" || path === "/send") {
      renderMedia(bubble, body);
    } else if (path === "/send-location") {
      renderLocation(bubble, body);
    } else if (path === "/send/list") {
      renderList(bubble, message);
    } else if (path === "/send/button") {
      const interactive = body.interactive || {};
      if (str(interactive.title)) bubble.append(el("p", { class: "title", text: interactive.title }));
      bubble.append(textParagraph(interactive.text));
      if (str(interactive.footerText)) bubble.append(el("p", { class: "footer", text: interactive.footerText }));
    } else {
      bubble.append(el("p", { class: "title", text: `POST ${path}` }));
      bubble.append(el("pre", { class: "raw", text: JSON.stringify(body, null, 2) }));
    }
  }

  const MEDIA_BADGE = { video: "VIDEO", audio: "AUDIO", document: "DOC", image: "IMG" };

  function renderMedia(bubble, body) {
    const url = webUrl(body.mediaUrl);
    const caption = body.type === "audio" ? null : str(body.message);
    const name = str(body.fileName) || fileNameOf(body.mediaUrl) || body.type;
    const placeholder = () => {
      const details = [body.type, str(body.mimetype)].filter(Boolean).join(" · ");
      return el("div", { class: `file file-${body.type}` }, [
        el("span", { class: "file-badge", "aria-hidden": "true", text: MEDIA_BADGE[body.type] || "FILE" }),
        el("div", { class: "file-text" }, [
          user(name, { class: "file-name" }),
          el("p", { class: "file-meta", text: details }),
          el("p", { class: "media-url", dir: "ltr", text: str(body.mediaUrl) || "(no URL)" }),
        ]),
      ]);
    };
    if (body.type === "image" && url) {
      bubble.classList.add("has-image");
      const image = el("img", {
        class: "media-image",
        src: url,
        alt: caption || name || "Image",
        loading: "lazy",
        decoding: "async",
        referrerpolicy: "no-referrer",
      });
      // A picture that cannot be shown (gone, blocked, not an image): what it was, not a
      // broken-image box.
      image.addEventListener("error", () => {
        bubble.classList.remove("has-image");
        image.replaceWith(placeholder());
      });
      bubble.append(image);
    } else {
      bubble.append(placeholder());
    }
    if (caption) bubble.append(textParagraph(caption));
    if (url) {
      bubble.append(el("a", {
        class: "open-link",
        href: url,
        target: "_blank",
        rel: "noopener noreferrer",
        text: `Open ${body.type}`,
      }));
    }
  }

  function renderLocation(bubble, body) {
    const lat = Number(body.latitude);
    const lon = Number(body.longitude);
    bubble.append(el("div", { class: "location" }, [
      el("div", { class: "map", "aria-hidden": "true" }, [el("span", { class: "pin" })]),
      el("div", { class: "location-text" }, [
        el("p", { class: "place", dir: "auto", text: str(body.name) || "Location" }),
        str(body.address) ? el("p", { class: "address", dir: "auto", text: body.address }) : null,
        el("p", { class: "coords", text: `${lat.toFixed(5)}, ${lon.toFixed(5)}` }),
      ]),
    ]));
  }

  let panelIds = 0;

  function renderList(bubble, message) {
    const interactive = (message.body && message.body.interactive) || {};
    if (str(interactive.title)) bubble.append(el("p", { class: "title", text: interactive.title }));
    if (str(interactive.text)) bubble.append(textParagraph(interactive.text));
    if (str(interactive.footerText)) bubble.append(el("p", { class: "footer", text: interactive.footerText }));
    panelIds += 1;
    const panel = el("div", { class: "list-panel", id: `list-panel-${panelIds}`, hidden: true });
    const toggle = el("button", {
      type: "button",
      class: "list-toggle",
      "aria-expanded": "false",
      "aria-controls": panel.id,
      text: `☰ ${str(interactive.buttonText) || "Menu"}`,
    });
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      panel.hidden = !open;
    });
    const to = message.body && message.body.number;
    for (const section of Array.isArray(interactive.sections) ? interactive.sections : []) {
      const rows = el("ul", { class: "rows" });
      for (const row of Array.isArray(section.rows) ? section.rows : []) {
        const rowButton = el("button", { type: "button", class: "row", title: "Choose this row" }, [
          user(row.title || "", { class: "row-title" }),
          str(row.description) ? user(row.description, { class: "row-desc" }) : null,
        ]);
        // A row without an id is known by its title (as WhatsApp answers then).
        rowButton.addEventListener("click", () => choose(to, str(row.rowId) || row.title));
        rows.append(el("li", {}, [rowButton]));
      }
      panel.append(el("section", { class: "list-section" }, [
        str(section.title) ? el("h4", { text: section.title }) : null,
        rows,
      ]));
    }
    bubble.append(toggle, panel);
  }

  function renderReplyButtons(message) {
    const interactive = (message.body && message.body.interactive) || {};
    const buttons = Array.isArray(interactive.buttons) ? interactive.buttons.slice(0, 3) : [];
    const group = el("div", { class: "reply-buttons", role: "group", "aria-label": "Reply buttons" });
    for (const button of buttons) {
      const text = button.text || button.title || button.id || "";
      const node = el("button", { type: "button", title: "Press this button", text });
      node.addEventListener("click", () => choose(message.body.number, str(button.id) || text));
      group.append(node);
    }
    return group;
  }

  // -- answering as the customer ---------------------------------------------------------------

  /** The customer picks a list row or presses a reply button: its id goes back. */
  async function choose(number, selectedId) {
    ui.replyError.textContent = "";
    if (!selected || !str(number) || !str(selectedId)) return;
    try {
      await act(instancePath(selected, "messages"), { from: number, selected_id: selectedId });
    } catch (err) {
      ui.replyError.textContent = `Not sent: ${err.message}`;
    }
  }

  ui.replyFrom.addEventListener("input", () => {
    fromTouched = true;
  });

  ui.reply.addEventListener("submit", async (event) => {
    event.preventDefault();
    ui.replyError.textContent = "";
    const from = ui.replyFrom.value.replace(/[\s+\-()]/g, "");
    const text = ui.replyText.value;
    if (!selected) return;
    if (!/^[0-9]+$/.test(from)) {
      ui.replyError.textContent = "The customer's number is digits only, with the country code.";
      ui.replyFrom.focus();
      return;
    }
    if (!text.trim()) {
      ui.replyText.focus();
      return;
    }
    ui.replySend.disabled = true;
    try {
      await act(instancePath(selected, "messages"), { from, text });
      ui.replyText.value = "";
    } catch (err) {
      ui.replyError.textContent = `Not sent: ${err.message}`;
    } finally {
      ui.replySend.disabled = !selected;
      ui.replyText.focus();
    }
  });

  // -- deliveries ------------------------------------------------------------------------------

  function addDelivery(delivery) {
    const entry = delivery.instance && instances.get(delivery.instance);
    const ok = typeof delivery.status === "number" && delivery.status < 300;
    const result = typeof delivery.status === "number"
      ? el("span", { class: `status ${ok ? "ok" : "bad"}`, text: String(delivery.status) })
      : el("span", { class: "status bad", text: delivery.error || "no answer" });
    const target = webUrl(delivery.url) || str(delivery.url);
    const row = el("tr", {}, [
      el("td", { class: "time" }, [clock(delivery.at)]),
      el("td", { class: "event" }, [
        el("span", { text: delivery.event }),
        entry ? user(entry.view.display_name, { class: "instance-name" }) : null,
        el("span", { class: "instance-api", text: delivery.instance || "" }),
        target ? el("span", { class: "hook-url", dir: "ltr", title: target, text: `→ ${target}` }) : null,
      ]),
      el("td", {}, [result, el("span", { class: "hook", text: `webhook #${delivery.webhook_id}` })]),
    ]);
    ui.deliveryRows.prepend(row); // newest on top (a snapshot comes oldest first)
    while (ui.deliveryRows.rows.length > MAX_DELIVERIES) ui.deliveryRows.lastElementChild.remove();
    ui.deliveryTable.hidden = false;
    ui.noDeliveries.hidden = true;
  }

  // -- phone width: the card list folds away, so the chat is one tap away --------------------

  const narrow = window.matchMedia("(max-width: 720px)");
  ui.instancesToggle.addEventListener("click", () => {
    const open = ui.instancesToggle.getAttribute("aria-expanded") !== "true";
    ui.instancesToggle.setAttribute("aria-expanded", open ? "true" : "false");
    ui.instancesToggle.textContent = open ? "Hide cards" : "Show cards";
    document.body.classList.toggle("instances-folded", !open);
  });

  // -- start -----------------------------------------------------------------------------------

  window.addEventListener("pagehide", () => {
    streamGeneration += 1;
    if (streamAbort) streamAbort.abort();
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) restartStream();
  });
  if (apiKey) ui.forgetKey.hidden = false;
  renderChat();
  restartStream();
})();
