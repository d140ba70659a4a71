// The memory browser: pick an owner; see its memory (overview, timeline, retention, jobs);
// search, browse, open, edit, archive, restore, erase. Every piece of memory data reaches
// the page through textContent / text nodes, never as markup: memory text is written by
// whoever talks to the agent.
import { api, ApiError, keyStore, ownerScope } from "./api.js";
import { renderChosenDiff, showVersionDiff } from "./diff.js";
import { $, el, when } from "./dom.js";
import { renderJobs } from "./jobs.js";
import { renderOverview } from "./overview.js";
import { renderRetention } from "./retention.js";
import { Tabs } from "./tabs.js";
import { TimelineView } from "./timeline.js";

const PAGE_SIZE = 50;
const BUILT_IN_TYPES = ["turn", "fact", "preference", "event", "summary", "experience",
  "document", "note"];
const OWNER_SLOT = "engram.owner";

const state = {
  noAuth: false, // the server runs --no-auth
  owners: new Map(), // owner -> {owner, user_id, agent_id} from GET /v1/owners
  owner: null, // the chosen owner
  linked: null, // a #memory=<id> link to open once an owner is chosen
  items: [], // loaded pages of the browse list
  cursor: null, // next_cursor of the last page
  current: null, // the open memory
  busy: 0, // requests in flight (mirrored on body[data-busy] for tests)
};

function say(message) {
  $("alert").hidden = true;
  $("status").textContent = message;
}

function complain(message) {
  $("alert").textContent = message;
  $("alert").hidden = false;
}

function explain(error) {
  if (!(error instanceof ApiError)) return `Request failed: ${error.message}`;
  if (error.status === 404) {
    return "Not found: the memory does not exist or belongs to an owner this key cannot see.";
  }
  return `${error.message} (${error.code})`;
}

/** Run one request-driven action: busy marker for tests and screen readers, errors shown. */
async function act(section, work) {
  state.busy += 1;
  document.body.dataset.busy = String(state.busy);
  if (section) section.setAttribute("aria-busy", "true");
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && !state.noAuth) {
      keyStore.clear();
      showKeyForm();
      complain("The API key was not accepted. Enter a valid key.");
    } else {
      complain(explain(error));
    }
    return undefined;
  } finally {
    state.busy -= 1;
    document.body.dataset.busy = String(state.busy);
    if (section) section.removeAttribute("aria-busy");
  }
}

// --- access: key and owner ---------------------------------------------------------------

function showKeyForm() {
  state.owner = null;
  $("key-form").hidden = false;
  $("forget-key").hidden = true;
  $("key-info").hidden = true;
  $("owner-box").hidden = true;
  $("workspace").hidden = true;
  $("api-key").value = "";
}

function showOwners(refs) {
  state.owners = new Map(refs.map((ref) => [ref.owner, ref]));
  const select = $("owner");
  select.replaceChildren(...refs.map((ref) => el("option", { value: ref.owner }, ref.owner)));
  $("key-form").hidden = true;
  $("key-info").hidden = false;
  $("key-info").textContent = state.noAuth
    ? "This server runs without authentication (--no-auth): every owner is visible."
    : "Using the API key of this tab.";
  $("forget-key").hidden = state.noAuth;
  $("owner-box").hidden = false;
  if (refs.length === 0) {
    $("workspace").hidden = true;
    say("No owners with memories are visible here yet.");
    return;
  }
  const saved = sessionStorage.getItem(OWNER_SLOT);
  select.value = state.owners.has(saved) ? saved : refs[0].owner;
  $("workspace").hidden = false;
  selectOwner();
  // a #memory=<id> link opens once an owner is chosen (choosing one clears the hash)
  if (state.linked) openFromHash(state.linked);
  state.linked = null;
}

/** Ask /healthz whether the server wants keys; then list the owners (with the saved key). */
async function connect() {
  await act($("access"), async () => {
    state.noAuth = !(await api.health()).auth;
    const key = state.noAuth ? null : keyStore.get();
    if (!state.noAuth && !key) {
      showKeyForm();
      say("Enter an API key to browse memories.");
      $("api-key").focus();
      return;
    }
    try {
      showOwners((await api.owners(key)).owners);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) throw error;
      keyStore.clear();
      showKeyForm();
      complain("The saved API key is no longer accepted. Enter a valid key.");
      $("api-key").focus();
    }
  });
}

async function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  await act($("access"), async () => {
    try {
      const refs = (await api.owners(key)).owners;
      keyStore.set(key);
      showOwners(refs);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) throw error;
      complain("That API key was not accepted.");
      $("api-key").focus();
    }
  });
}

function forgetKey() {
  keyStore.clear();
  sessionStorage.removeItem(OWNER_SLOT);
  state.owner = null;
  closeDetail();
  showKeyForm();
  say("Key forgotten.");
  $("api-key").focus();
}

const scope = () => ownerScope(state.owners.get(state.owner));

function selectOwner() {
  state.owner = $("owner").value;
  sessionStorage.setItem(OWNER_SLOT, state.owner);
  $("search-results").replaceChildren();
  closeDetail();
  loadPage(true);
  loadView(tabs.current);
}

// --- views of the owner's memory: overview, timeline, retention, jobs -----------------------

const timelineView = new TimelineView({ openMemory: (id) => openMemory(id) });
const VIEWS = {
  overview: { fetch: () => api.overview(scope()), render: renderOverview },
  timeline: {
    fetch: () => api.timeline(scope(), { includeArchived: $("timeline-archived").checked }),
    render: (data) => timelineView.render(data),
  },
  retention: {
    fetch: () => api.retention(scope()),
    render: (data) => renderRetention(data, { openMemory: (id) => openMemory(id) }),
  },
  jobs: {
    fetch: () => api.jobs(scope(), { state: $("jobs-state").value || undefined }),
    render: renderJobs,
  },
};

/** Fetch and draw one view for the chosen owner (each time it is shown: data changes). */
async function loadView(name) {
  const view = VIEWS[name];
  if (!view || !state.owner) return;
  const owner = state.owner;
  const panel = $(`view-${name}`);
  await act(panel, async () => {
    const data = await view.fetch();
    if (owner !== state.owner) return; // the owner changed while this view was loading
    view.render(data);
    panel.dataset.owner = owner; // which owner the view shows (read by the tests)
    say(`Showing ${owner}: ${name}.`);
  });
}

const tabs = new Tabs($("views"), (name) => loadView(name));

// --- browse --------------------------------------------------------------------------------

function addTypeOption(type) {
  const select = $("filter-type");
  if ([...select.options].some((option) => option.value === type)) return;
  select.append(el("option", { value: type }, type));
}

// When a memory happened (its conversation time), else when it was stored: as `engram list`.
function happened(item) {
  return when(item.provenance.timestamp || item.created_at);
}

function itemMeta(item) {
  return el("span", { class: "meta" }, `${item.type} · ${item.state} · v${item.version} · `,
    happened(item));
}

function openButton(item) {
  return el("button", { type: "button", class: "open", dataset: { id: item.id },
    onclick: () => openMemory(item.id) }, item.memory);
}

function matchesFilters(item) {
  const wanted = $("filter-state").value;
  if (wanted !== "all" && item.state !== wanted) return false;
  const text = $("filter-text").value.trim().toLowerCase();
  return !text || item.memory.toLowerCase().includes(text);
}

function renderList() {
  const shown = state.items.filter(matchesFilters);
  $("memory-list").replaceChildren(...shown.map((item) =>
    el("li", { class: item.state, dataset: { id: item.id } }, openButton(item), itemMeta(item))));
  const more = state.cursor ? " (more on the server)" : "";
  $("browse-count").textContent = `${shown.length} shown of ${state.items.length} loaded${more}.`;
  $("load-more").hidden = !state.cursor;
}

async function loadPage(reset) {
  if (reset) {
    state.items = [];
    state.cursor = null;
  }
  const type = $("filter-type").value;
  const owner = state.owner;
  await act($("browse"), async () => {
    const page = await api.list(scope(), {
      cursor: state.cursor,
      limit: PAGE_SIZE,
      type: type || undefined,
      includeArchived: $("filter-state").value !== "active",
    });
    if (owner !== state.owner) return; // the owner changed while this page was loading
    const items = page.items;
    items.forEach((item) => addTypeOption(item.type));
    state.items.push(...items);
    state.cursor = page.next_cursor || null;
    renderList();
    say(`Loaded ${state.items.length} memories of ${owner}.`);
  });
}

// --- search --------------------------------------------------------------------------------

async function search(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  const k = Number($("k").value) || 10;
  await act($("search"), async () => {
    const { hits } = await api.search(scope(), query, k);
    $("search-results").replaceChildren(...hits.map((hit) => {
      const where = [hit.provenance.session_id, hit.provenance.name, hit.provenance.source]
        .filter(Boolean).join(" · ");
      return el("li", { dataset: { id: hit.id } }, openButton(hit),
        el("span", { class: "meta" },
          `relevance ${hit.relevance.toFixed(2)} · ${hit.type} · `, happened(hit),
          where ? ` · ${where}` : ""));
    }));
    say(hits.length ? `${hits.length} results for “${query}”.` : `No results for “${query}”.`);
  });
}

// --- one memory ----------------------------------------------------------------------------

function fields(target, rows) {
  $(target).replaceChildren(...rows
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
}

function renderHistory(versions) {
  $("history").tBodies[0].replaceChildren(...versions.map((v) => el("tr", {},
    el("td", {}, String(v.version)), el("td", {}, v.event), el("td", {}, when(v.at)),
    el("td", { class: "text" }, v.memory === null ? "(erased)" : v.memory),
    el("td", {}, v.reason || ""), el("td", {}, v.source || ""))));
}

const TIER_NAMES = { text: "text", activation: "KV block", parametric: "LoRA adapter" };

function renderTiers(held) {
  $("tiers").tBodies[0].replaceChildren(...held.map((h) => el("tr", {},
    el("td", {}, TIER_NAMES[h.tier] || h.tier), el("td", { class: "text" }, h.key),
    el("td", {}, String(h.memory_version)), el("td", {}, h.current ? "yes" : "no, rebuild"))));
}

function renderDetail(item, versions, held) {
  state.current = item;
  $("detail-title").textContent = `Memory ${item.id}`;
  $("detail-text").textContent = item.memory;
  fields("detail-fields", [
    ["id", item.id], ["type", item.type], ["state", item.state],
    ["version", String(item.version)], ["created", when(item.created_at)],
    ["updated", when(item.updated_at)], ["accessed", `${item.access_count} times`],
  ]);
  const p = item.provenance;
  fields("detail-provenance", [
    ["owner", p.owner], ["user", p.user_id], ["agent", p.agent_id], ["session", p.session_id],
    ["source", p.source], ["source id", p.source_id],
    ["turn", p.turn_index === null ? null : String(p.turn_index)], ["role", p.role],
    ["speaker", p.name], ["time", when(p.timestamp)],
  ]);
  $("detail-metadata").textContent = JSON.stringify(item.metadata, null, 2);
  $("edit-text").value = item.memory;
  $("edit-metadata").value = JSON.stringify(item.metadata);
  $("edit-reason").value = "";
  $("archive").hidden = item.state !== "active";
  $("restore").hidden = item.state === "active";
  renderHistory(versions);
  renderTiers(held);
  showVersionDiff(versions);
  $("detail").hidden = false;
}

function replaceInList(item) {
  const index = state.items.findIndex((one) => one.id === item.id);
  if (index >= 0) state.items[index] = item;
  renderList();
}

function dropFromLists(id) {
  state.items = state.items.filter((one) => one.id !== id);
  renderList();
  for (const row of $("search-results").querySelectorAll("li")) {
    if (row.dataset.id === id) row.remove();
  }
}

async function refresh(id) {
  const [item, versions, held] = await Promise.all(
    [api.get(scope(), id), api.history(scope(), id), api.tiers(scope(), id)]);
  renderDetail(item, versions.versions, held.tiers);
  return item;
}

async function openMemory(id) {
  if (tabs.current !== "memories") tabs.show("memories");
  await act($("detail"), async () => {
    const item = await refresh(id);
    history.replaceState(null, "", `#memory=${encodeURIComponent(id)}`);
    $("detail-title").focus();
    say(`Opened memory ${item.id} (version ${item.version}).`);
  });
}

function closeDetail() {
  state.current = null;
  $("detail").hidden = true;
  if (location.hash) history.replaceState(null, "", location.pathname);
}

async function saveEdit(event) {
  event.preventDefault();
  const item = state.current;
  const changes = {};
  const text = $("edit-text").value;
  if (text !== item.memory) changes.text = text;
  const rawMetadata = $("edit-metadata").value.trim() || "{}";
  let metadata;
  try {
    metadata = JSON.parse(rawMetadata);
  } catch (error) {
    complain(`Metadata is not valid JSON: ${error.message}`);
    return;
  }
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    complain("Metadata must be a JSON object.");
    return;
  }
  if (JSON.stringify(metadata) !== JSON.stringify(item.metadata)) changes.metadata = metadata;
  if (!Object.keys(changes).length) {
    complain("Nothing changed: edit the text or the metadata first.");
    return;
  }
  const reason = $("edit-reason").value.trim();
  if (reason) changes.reason = reason;
  await act($("detail"), async () => {
    await api.update(scope(), item.id, changes);
    const updated = await refresh(item.id);
    replaceInList(updated);
    say(`Saved version ${updated.version} of memory ${updated.id}.`);
  });
}

async function setArchived(archived) {
  const id = state.current.id;
  await act($("detail"), async () => {
    await (archived ? api.archive(scope(), id) : api.restore(scope(), id));
    const item = await refresh(id);
    replaceInList(item);
    say(archived ? `Archived memory ${id}.` : `Restored memory ${id}.`);
    $(archived ? "restore" : "archive").focus();
  });
}

function askErase() {
  $("confirm-text").textContent = state.current.memory;
  $("confirm-delete").returnValue = "";
  $("confirm-delete").showModal();
}

async function confirmErase() {
  if ($("confirm-delete").returnValue !== "erase" || !state.current) {
    $("hard-delete").focus();
    return;
  }
  const id = state.current.id;
  await act($("detail"), async () => {
    await api.erase(scope(), id);
    closeDetail();
    dropFromLists(id);
    say(`Memory ${id} was erased with all its versions.`);
    $("browse-title").setAttribute("tabindex", "-1");
    $("browse-title").focus();
  });
}

// --- wiring --------------------------------------------------------------------------------

function openFromHash(hash = location.hash) {
  const match = /^#memory=(.+)$/.exec(hash);
  if (!match) return;
  if (state.owner) openMemory(decodeURIComponent(match[1]));
  else state.linked = hash; // opened after sign-in
}

function start() {
  BUILT_IN_TYPES.forEach(addTypeOption);
  document.body.dataset.busy = "0";
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("owner").addEventListener("change", selectOwner);
  $("search-form").addEventListener("submit", search);
  $("filter-type").addEventListener("change", () => loadPage(true));
  $("filter-state").addEventListener("change", () => loadPage(true));
  $("filter-text").addEventListener("input", renderList);
  $("filter-form").addEventListener("submit", (event) => event.preventDefault());
  $("load-more").addEventListener("click", () => loadPage(false));
  $("close-detail").addEventListener("click", closeDetail);
  $("edit-form").addEventListener("submit", saveEdit);
  $("archive").addEventListener("click", () => setArchived(true));
  $("restore").addEventListener("click", () => setArchived(false));
  $("hard-delete").addEventListener("click", askErase);
  $("confirm-delete").addEventListener("close", confirmErase);
  $("diff-from").addEventListener("change", renderChosenDiff);
  $("diff-to").addEventListener("change", renderChosenDiff);
  $("diff-form").addEventListener("submit", (event) => event.preventDefault());
  $("timeline-archived").addEventListener("change", () => loadView("timeline"));
  $("timeline-form").addEventListener("submit", (event) => event.preventDefault());
  $("jobs-state").addEventListener("change", () => loadView("jobs"));
  $("jobs-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadView("jobs");
  });
  window.addEventListener("resize", () => timelineView.redraw());
  tabs.restore();
  state.linked = location.hash;
  window.addEventListener("hashchange", () => openFromHash());
  connect();
}

start();
