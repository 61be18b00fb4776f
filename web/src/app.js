// app.js — the entry point: hash routes (#/login, #/queue, #/case/<id>), the
// signed-in reviewer, notices, and the keyboard shortcuts, which it hands to
// the page on screen. Each page is a function (root, ctx, ...) returning
// { leave(), onKey(event) }.

import * as api from './api.js';
import { h, mount } from './dom.js';
import { loginPage } from './login.js';
import { queuePage } from './queue.js';
import { casePage } from './case.js';

const root = document.getElementById('page');
const who = document.getElementById('who');
const notice = document.getElementById('notice');

let current = null;
let me = null;
/** A case the queue page already fetched (claim-next answers with it), so the case page need not. */
let handedCase = null;

const ctx = {
  get me() {
    return me;
  },
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  openCase(kase) {
    handedCase = kase;
    ctx.go(`#/case/${kase.id}`);
  },
  takeCase(id) {
    const kase = handedCase?.id === id ? handedCase : null;
    handedCase = null;
    return kase;
  },
  notify(message, kind = 'info') {
    notice.hidden = false;
    notice.dataset.kind = kind;
    notice.textContent = message;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => (notice.hidden = true), kind === 'error' ? 15000 : 5000);
  },
  /** Every failed API call ends here: a refused token sends the reviewer back to the login. */
  fail(error) {
    if (error instanceof api.ApiError && error.status === 401) {
      signOut(`Signed out: ${error.message}`);
      return;
    }
    ctx.notify(error.message ?? String(error), 'error');
  },
  signedIn(user) {
    me = user;
    showUser();
    ctx.go('#/queue');
  },
};

function signOut(message) {
  api.clearToken();
  me = null;
  showUser();
  if (message) ctx.notify(message, 'error');
  ctx.go('#/login');
}

function showUser() {
  if (!me) {
    mount(who);
    return;
  }
  mount(
    who,
    h('span', { id: 'me', dataset: { name: me.name, role: me.role } }, me.name, ' · ', me.role),
    h('button', { type: 'button', class: 'link', onclick: () => signOut() }, 'Sign out'),
  );
}

async function route() {
  current?.leave?.();
  current = null;
  const [, page, id] = location.hash.match(/^#\/(\w+)(?:\/(\d+))?$/) ?? [];
  if (!api.token()) {
    current = loginPage(root, ctx);
    return;
  }
  if (!me) {
    try {
      me = await api.me();
      showUser();
    } catch (e) {
      if (e.status === 401) signOut(`Signed out: ${e.message}`);
      else mount(root, h('p', { class: 'error' }, `Cannot reach the review API: ${e.message}`));
      return;
    }
  }
  if (page === 'case' && id) current = casePage(root, ctx, Number(id));
  else if (page === 'queue') current = queuePage(root, ctx);
  else ctx.go('#/queue');
}

/** Shortcuts belong to the page, never to a field being typed in. */
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  const t = e.target;
  if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
    if (!(t instanceof HTMLInputElement && (t.type === 'range' || t.type === 'checkbox'))) return;
  }
  current?.onKey?.(e);
});

window.addEventListener('hashchange', route);
route();
