/**
 * The explorer page's script (browser code, compiled by tsconfig.ui.json; no imports, no dependencies). Everything
 * goes through the service's JSON API; the bearer token, when given, is kept in sessionStorage and sent with every
 * request.
 */

interface ModelInfo {
  name: string;
  kind: string;
  strategy: string;
  items: number;
  warm: number;
  lexical_weight: number | null;
  /** What POST /items accepts as `fields` for this model (its text encoder's fields). */
  text_fields: string[];
}
/** A repeated query parameter: name=a&name=b (ids may hold commas). */
function query(name: string, ids: readonly string[]): string {
  return ids.map((id) => `&${name}=${encodeURIComponent(id)}`).join('');
}

interface ItemDetails {
  id: string;
  known: boolean;
  cold: boolean | null;
  added: boolean;
  fields: Record<string, string> | null;
  lexical: number | null;
}

const TOKEN_KEY = 'deltarec.token';
const state = { models: [] as ModelInfo[], fields: [] as string[], titleField: null as string | null };
/** The history being built, oldest first. */
const historyIds: string[] = [];

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

function el(tag: string, props: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') element.className = v;
    else element.setAttribute(k, v);
  }
  element.append(...children);
  return element;
}

function setStatus(text: string, error = false): void {
  const status = $('status');
  status.textContent = text;
  status.className = error ? 'error' : '';
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // not JSON: the text itself is the message
  }
  if (!response.ok) {
    const message = (data as { message?: string } | null)?.message ?? text;
    throw new Error(`${method} ${path}: ${response.status} ${message}`);
  }
  return data as T;
}

function titleOf(id: string, fields: Record<string, string> | null): string {
  return (fields && state.titleField && fields[state.titleField]) || fields?.title || fields?.text || id;
}

/** An image field as a picture: http(s), data:image/ or a same-origin path only. */
function picture(fields: Record<string, string> | null): HTMLElement | null {
  const src = fields?.image;
  if (!src || !/^(https?:\/\/|data:image\/|\/)/i.test(src)) return null;
  return el('img', { src, alt: '' });
}

function itemRow(
  id: string,
  fields: Record<string, string> | null,
  extra: (Node | string)[] = [],
): HTMLElement {
  const meta = el(
    'div',
    { class: 'meta' },
    el('div', { class: 'title' }, titleOf(id, fields)),
    el('div', { class: 'id' }, id),
  );
  const row = el('li', { class: 'item', 'data-id': id });
  const image = picture(fields);
  if (image) row.append(image);
  row.append(meta, ...extra);
  return row;
}

async function search(): Promise<void> {
  const q = ($('search') as HTMLInputElement).value;
  try {
    const { items } = await api<{ items: { id: string; fields: Record<string, string> | null }[] }>(
      'GET',
      `/ui/api/search?q=${encodeURIComponent(q)}&limit=20`,
    );
    const list = $('search-results');
    list.replaceChildren(
      ...items.map((item) => {
        const row = itemRow(item.id, item.fields);
        row.title = 'add to the history';
        row.addEventListener('click', () => addToHistory([item.id]));
        return row;
      }),
    );
  } catch (error) {
    setStatus((error as Error).message, true);
  }
}

function addToHistory(ids: string[]): void {
  historyIds.push(...ids);
  void refresh();
}

async function renderHistory(): Promise<void> {
  const list = $('history');
  if (historyIds.length === 0) {
    list.replaceChildren();
    return;
  }
  const { items } = await api<{ items: ItemDetails[] }>(
    'GET',
    `/ui/api/items?model=0${query('ids', historyIds)}`,
  );
  list.replaceChildren(
    ...items.map((item, position) => {
      const remove = el('button', { class: 'remove', type: 'button', title: 'remove' }, '\u00d7');
      remove.addEventListener('click', () => {
        historyIds.splice(position, 1);
        void refresh();
      });
      const badges = item.known ? [] : [el('span', { class: 'badge added' }, 'unknown')];
      return itemRow(item.id, item.fields, [...badges, remove]);
    }),
  );
}

async function renderModel(index: number, k: number): Promise<HTMLElement> {
  const model = state.models[index];
  const fused = model.lexical_weight !== null;
  const heading = el(
    'h2',
    {},
    model.name,
    ' ',
    el(
      'small',
      {},
      `${model.kind}/${model.strategy}${fused ? `, fused with lexical weight ${model.lexical_weight}` : ''}`,
    ),
  );
  const box = el('section', { class: 'model', 'data-model': String(index) }, heading);
  if (historyIds.length === 0) {
    box.append(el('p', { class: 'id' }, 'Build a history to see recommendations.'));
    return box;
  }
  try {
    const { items } = await api<{ items: { id: string; score: number }[] }>(
      'POST',
      `/ui/api/models/${index}/recommend`,
      { items: historyIds, k },
    );
    const ids = items.map((i) => i.id);
    const path = `/ui/api/items?model=${index}${query('ids', ids)}${query('history', historyIds)}`;
    const details = items.length ? (await api<{ items: ItemDetails[] }>('GET', path)).items : [];
    const list = el('ol', { class: 'results' });
    items.forEach((item, rank) => {
      const d = details[rank];
      const extra: (Node | string)[] = [];
      if (d?.cold) extra.push(el('span', { class: 'badge cold' }, d.added ? 'new' : 'cold'));
      const score = el('div', { class: 'score', 'data-score': String(item.score) }, item.score.toFixed(4));
      const column = el('div', {}, score);
      if (fused && d?.lexical !== null && d?.lexical !== undefined) {
        column.append(
          el(
            'div',
            { class: 'terms' },
            `model ${(item.score - d.lexical).toFixed(3)} + lexical ${d.lexical.toFixed(3)}`,
          ),
        );
      }
      extra.push(column);
      const row = itemRow(item.id, d?.fields ?? null, extra);
      row.prepend(el('span', { class: 'rank' }, String(rank + 1)));
      row.setAttribute('data-rank', String(rank + 1));
      list.append(row);
    });
    box.append(list);
  } catch (error) {
    box.append(el('p', { class: 'error' }, (error as Error).message));
  }
  return box;
}

async function refresh(): Promise<void> {
  try {
    await renderHistory();
    const k = Math.max(1, Math.min(100, Number(($('k') as HTMLInputElement).value) || 10));
    const boxes = await Promise.all(state.models.map((_, i) => renderModel(i, k)));
    $('models').replaceChildren(...boxes);
    document.body.dataset.ready = String(Date.now());
  } catch (error) {
    setStatus((error as Error).message, true);
  }
}

function buildAddForm(): void {
  const form = $('add-form') as HTMLFormElement;
  const fields = [...new Set(state.models.flatMap((m) => m.text_fields))];
  const input = (name: string, label: string) =>
    el('label', {}, label, el('input', { type: 'text', name, 'data-field': name }));
  form.append(input('id', 'id'), ...fields.map((f) => input(`field-${f}`, f)));
  form.append(el('button', { type: 'submit' }, 'add to every model'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void addItem(form, fields);
  });
}

async function addItem(form: HTMLFormElement, fields: string[]): Promise<void> {
  const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
  const id = value('id');
  const given: Record<string, string> = {};
  for (const f of fields) if (value(`field-${f}`)) given[f] = value(`field-${f}`);
  if (!id || Object.keys(given).length === 0) {
    setStatus('an item needs an id and at least one field', true);
    return;
  }
  const outcomes = await Promise.all(
    state.models.map((m, i) => {
      const mine = Object.fromEntries(Object.entries(given).filter(([f]) => m.text_fields.includes(f)));
      return api<{ status: string }>('POST', `/ui/api/models/${i}/items`, { id, fields: mine }).then(
        (r) => `${m.name}: ${r.status}`,
        (error: Error) => `${m.name}: ${error.message}`,
      );
    }),
  );
  setStatus(
    `item ${id}: ${outcomes.join('; ')}`,
    outcomes.some((o) => / [45]\d\d /.test(o)),
  );
  form.reset();
  await refresh();
}

async function start(): Promise<void> {
  const token = $('token') as HTMLInputElement;
  token.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  $('token-save').addEventListener('click', () => {
    if (token.value) sessionStorage.setItem(TOKEN_KEY, token.value);
    else sessionStorage.removeItem(TOKEN_KEY);
    void init();
  });
  let timer = 0;
  $('search').addEventListener('input', () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void search(), 150);
  });
  $('paste-add').addEventListener('click', () => {
    const area = $('paste') as HTMLTextAreaElement;
    const ids = area.value.split(/[\s,]+/).filter((s) => s.length > 0);
    area.value = '';
    if (ids.length) addToHistory(ids);
  });
  $('clear').addEventListener('click', () => {
    historyIds.length = 0;
    void refresh();
  });
  $('k').addEventListener('change', () => void refresh());
  await init();
}

async function init(): Promise<void> {
  try {
    const info = await api<{ models: ModelInfo[]; fields: string[]; title_field: string | null }>(
      'GET',
      '/ui/api/models',
    );
    state.models = info.models;
    state.fields = info.fields;
    state.titleField = info.title_field;
    if (!($('add-form') as HTMLFormElement).elements.length) buildAddForm();
    setStatus(
      `${info.models.length} model(s): ${info.models.map((m) => `${m.name} (${m.items} items)`).join(', ')}`,
    );
    await search();
    await refresh();
  } catch (error) {
    setStatus((error as Error).message, true);
  }
}

void start();
