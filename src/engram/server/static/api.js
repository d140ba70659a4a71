// The REST client of the memory browser: one fetch wrapper, the key in sessionStorage.
const KEY_SLOT = "engram.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const keyStore = {
  get: () => sessionStorage.getItem(KEY_SLOT),
  set: (key) => sessionStorage.setItem(KEY_SLOT, key),
  clear: () => sessionStorage.removeItem(KEY_SLOT),
};

/** An owner of GET /v1/owners ({owner, user_id, agent_id}) as the scope parameters. */
export function ownerScope(ref) {
  return ref.user_id ? { user_id: ref.user_id } : { agent_id: ref.agent_id };
}

async function call(method, path, { params, body, key = keyStore.get() } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) url.searchParams.append(name, one);
  }
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `${method} ${url.pathname} failed (HTTP ${response.status})`);
  }
  return data;
}

const memoryPath = (id) => `/v1/memories/${encodeURIComponent(id)}`;

export const api = {
  health: () => call("GET", "/healthz", { key: null }),
  owners: (key) => call("GET", "/v1/owners", { key }),
  list: (scope, { cursor, limit, type, includeArchived }) =>
    call("GET", "/v1/memories", {
      params: { ...scope, cursor, limit, type, include_archived: includeArchived || undefined },
    }),
  search: (scope, query, k) => call("POST", "/v1/search", { body: { ...scope, query, k } }),
  get: (scope, id) => call("GET", memoryPath(id), { params: scope }),
  history: (scope, id) => call("GET", `${memoryPath(id)}/history`, { params: scope }),
  tiers: (scope, id) => call("GET", `${memoryPath(id)}/tiers`, { params: scope }),
  update: (scope, id, changes) => call("PATCH", memoryPath(id), { params: scope, body: changes }),
  archive: (scope, id) => call("DELETE", memoryPath(id), { params: scope }),
  erase: (scope, id) => call("DELETE", memoryPath(id), { params: { ...scope, hard: "true" } }),
  restore: (scope, id) => call("POST", `${memoryPath(id)}/restore`, { params: scope }),
  overview: (scope) => call("GET", "/v1/insights/overview", { params: scope }),
  timeline: (scope, { includeArchived }) => call("GET", "/v1/insights/timeline",
    { params: { ...scope, include_archived: includeArchived || undefined } }),
  retention: (scope) => call("GET", "/v1/insights/retention", { params: scope }),
  jobs: (scope, { state }) => call("GET", "/v1/insights/jobs", { params: { ...scope, state } }),
};
