// login.js — the sign-in page: a reviewer pastes the token made by
// `neurobatch token create`; `GET /v1/me` checks it before it is stored.

import * as api from './api.js';
import { h, mount } from './dom.js';

export function loginPage(root, ctx) {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'token from `neurobatch token create`',
  });
  const status = h('p', { id: 'login-status', class: 'error', role: 'alert' });
  const button = h('button', { type: 'submit', id: 'sign-in' }, 'Sign in');

  async function submit(e) {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    status.textContent = '';
    try {
      const user = await api.me(token);
      api.setToken(token);
      ctx.signedIn(user);
    } catch (err) {
      status.textContent = err.status === 401 ? `Token refused: ${err.message}` : err.message;
      button.disabled = false;
      input.select();
    }
  }

  mount(
    root,
    h(
      'form',
      { class: 'login', onsubmit: submit },
      h('h1', {}, 'Sign in to the review queue'),
      h('label', { for: 'token' }, 'Access token'),
      input,
      button,
      status,
      h('p', { class: 'muted' }, 'The token is kept in this tab only and forgotten when it closes.'),
    ),
  );
  input.focus();
  return {};
}
