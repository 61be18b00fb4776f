// case.js — the case page: the viewer with its controls, the per-structure
// table, the thresholds crossed, the decision buttons (keys a, r, e; n claims
// the next case, releasing this one if undecided), the corrected-mask upload
// and the comments. After a decision the reviewer is back on the queue.

import * as api from './api.js';
import { h, mount } from './dom.js';
import { age, num, reason, rgb, shortKey, words } from './format.js';
import { Viewer, VIEWS } from './viewer.js';

const HEATMAPS = { entropy: 'Entropy', mutual_information: 'Mutual information' };

export function casePage(root, ctx, id) {
  let kase = null;
  let viewer = null;
  let busy = false;
  let left = false;
  const heatBytes = new Map();

  mount(root, h('p', { class: 'muted' }, `Loading case ${id}…`));

  const labelName = (value) => kase?.labels.find((l) => l.value === value)?.name ?? `label ${value}`;
  const mine = () => kase?.state === 'claimed' && kase.claimed_by === ctx.me?.name;

  // --- viewer ------------------------------------------------------------------
  const canvas = h('canvas', { id: 'gl', tabindex: '0' });
  const viewerBox = h('div', { id: 'viewer', class: 'viewer', dataset: { state: 'loading' } }, canvas);
  const location = h('div', { id: 'location', class: 'muted mono' }, ' ');
  const sliders = ['x (sagittal)', 'y (coronal)', 'z (axial)'].map((label, axis) => {
    const input = h('input', { type: 'range', min: 0, max: 0, step: 1, value: 0, id: `slice-${'xyz'[axis]}` });
    input.addEventListener('input', () => viewer?.setSlice(axis, Number(input.value)));
    const out = h('output', { class: 'mono' }, '0');
    return { input, out, el: h('label', { class: 'slice' }, label, input, out) };
  });
  function onLocation({ vox, dims, text }) {
    sliders.forEach((s, axis) => {
      s.input.max = String(Math.max(0, (dims[axis] ?? 1) - 1));
      s.input.value = String(vox[axis]);
      s.out.textContent = `${vox[axis]}/${Math.max(0, (dims[axis] ?? 1) - 1)}`;
    });
    location.textContent = text || ' ';
  }

  const opacity = h('input', { type: 'range', id: 'mask-opacity', min: 0, max: 1, step: 0.05, value: 0.5 });
  opacity.addEventListener('input', () => viewer?.setMaskOpacity(Number(opacity.value)));
  const heatmap = h('select', { id: 'heatmap' }, h('option', { value: '' }, 'off'),
    Object.entries(HEATMAPS).map(([value, text]) => h('option', { value }, text)));
  heatmap.addEventListener('change', () => showHeatmap(heatmap.value));
  const view = h('select', { id: 'view' }, Object.keys(VIEWS).map((v) => h('option', { value: v }, v)));
  view.addEventListener('change', () => viewer?.setView(view.value));
  const crosshair = h('input', { type: 'checkbox', id: 'crosshair', checked: true });
  crosshair.addEventListener('change', () => viewer?.setCrosshair(crosshair.checked));

  async function showHeatmap(name) {
    if (!viewer || !kase) return;
    try {
      let bytes = null;
      if (name) {
        if (!heatBytes.has(name)) heatBytes.set(name, await api.objectBytes(kase.objects[name]));
        bytes = heatBytes.get(name);
      }
      if (left || heatmap.value !== name) return;
      await viewer.setHeatmap(name, bytes);
      viewerBox.dataset.heatmap = name;
    } catch (e) {
      ctx.fail(e);
    }
  }

  async function startViewer() {
    try {
      viewer = new Viewer(canvas, onLocation);
      await viewer.attach();
      const [image, mask] = await Promise.all([api.objectBytes(kase.objects.image), api.objectBytes(kase.objects.mask)]);
      if (left) return;
      await viewer.open(image, mask, kase.labels);
      viewerBox.dataset.state = 'ready';
    } catch (e) {
      if (left) return;
      viewerBox.dataset.state = 'error';
      mount(viewerBox, h('p', { class: 'error' }, `The viewer failed: ${e.message}`));
      ctx.fail(e);
    }
  }

  // --- decisions -----------------------------------------------------------------
  const commentBox = h('textarea', { id: 'comment', rows: 3, placeholder: 'Comment (sent with a decision, or on its own)' });
  const buttons = {
    approve: h('button', { type: 'button', id: 'approve', class: 'approve', onclick: () => decide('approve') }, 'Approve ', h('kbd', {}, 'a')),
    reject: h('button', { type: 'button', id: 'reject', class: 'reject', onclick: () => decide('reject') }, 'Reject ', h('kbd', {}, 'r')),
    escalate: h('button', { type: 'button', id: 'escalate', onclick: () => decide('escalate') }, 'Escalate ', h('kbd', {}, 'e')),
    release: h('button', { type: 'button', id: 'release', onclick: release }, 'Release'),
  };
  const upload = h('input', { type: 'file', id: 'correction-file', accept: '.nii,.nii.gz,.gz' });
  const uploadButton = h('button', { type: 'button', id: 'upload-correction', onclick: correct }, 'Upload corrected mask');
  const claimNote = h('p', { id: 'claim-note', class: 'muted' });

  function refreshActions() {
    const can = mine() && !busy;
    for (const b of Object.values(buttons)) b.disabled = !can;
    upload.disabled = uploadButton.disabled = !can;
    if (!kase) return;
    if (mine()) {
      const until = kase.lease_expires_at ? new Date(kase.lease_expires_at).toLocaleTimeString() : '?';
      claimNote.textContent = `Claimed by you until ${until}.`;
    } else if (kase.state === 'claimed') {
      claimNote.textContent = `Claimed by ${kase.claimed_by}: only they can decide.`;
    } else if (kase.state === 'decided') {
      claimNote.textContent = `Decided: ${kase.decision}${kase.escalated ? ' (escalated)' : ''}.`;
    } else {
      claimNote.textContent = 'Pending: claim it with "Claim next" to decide.';
    }
  }

  async function act(fn) {
    if (busy) return;
    busy = true;
    refreshActions();
    try {
      await fn();
    } catch (e) {
      ctx.fail(e);
    } finally {
      busy = false;
      if (!left) refreshActions();
    }
  }

  function decide(action) {
    if (!mine()) {
      ctx.notify(`Case ${id} is not claimed by you: nothing to ${action}.`, 'error');
      return;
    }
    return act(async () => {
      await api.decide(id, action, commentBox.value.trim());
      ctx.notify(`Case ${id}: ${action === 'escalate' ? 'escalated' : `${action}d`}.`);
      ctx.go('#/queue');
    });
  }

  function release() {
    return act(async () => {
      await api.release(id);
      ctx.notify(`Case ${id} released to the queue.`);
      ctx.go('#/queue');
    });
  }

  function correct() {
    const file = upload.files?.[0];
    if (!file) {
      ctx.notify('Choose the corrected mask (NIfTI) first.', 'error');
      return;
    }
    return act(async () => {
      await api.correct(id, file);
      ctx.notify(`Case ${id}: corrected mask stored.`);
      ctx.go('#/queue');
    });
  }

  /** Skips to the next case: a case held but not decided goes back to the queue, after the next one is claimed (so it is not handed straight back). */
  function claimNext() {
    return act(async () => {
      const next = await api.claimNext();
      if (!next) {
        ctx.notify('Nothing else is pending.');
        return;
      }
      if (mine()) {
        await api.release(id);
        ctx.notify(`Case ${id} released to the queue.`);
      }
      ctx.openCase(next);
    });
  }

  // --- comments ------------------------------------------------------------------
  const commentList = h('ul', { id: 'comments', class: 'comments' });
  function showComments() {
    mount(commentList, kase.comments.length
      ? kase.comments.map((c) => h('li', {}, h('span', { class: 'muted' }, `${c.author}, ${age(c.created_at)} ago: `), c.text))
      : h('li', { class: 'muted' }, 'No comments.'));
  }
  function addComment() {
    const text = commentBox.value.trim();
    if (!text) return;
    return act(async () => {
      await api.comment(id, text);
      commentBox.value = '';
      kase = await api.item(id);
      if (!left) showComments();
    });
  }

  // --- page ----------------------------------------------------------------------
  function structuresTable() {
    const crossed = (label) => kase.thresholds_crossed.filter((t) => t.label === label);
    return h(
      'table',
      { id: 'structures', class: 'grid' },
      h('thead', {}, h('tr', {}, ['Structure', 'Volume (ml)', 'Volume CV', 'Agreement (Dice)', 'Mean entropy', 'Mean MI', 'Thresholds crossed'].map((c) => h('th', {}, c)))),
      // Background is not a structure a reviewer judges.
      h('tbody', {}, kase.structures.filter((s) => s.label !== 0).map((s) => {
        const color = kase.labels.find((l) => l.value === s.label)?.color;
        const over = crossed(s.label);
        return h(
          'tr',
          { class: over.length ? 'crossed' : null, dataset: { label: s.label } },
          h('td', {}, color ? h('span', { class: 'swatch', style: `background: ${rgb(color)}` }) : null, words(s.structure)),
          h('td', { class: 'num', title: `${s.voxels} voxels` }, num(s.volume_ml, 4)),
          h('td', { class: 'num' }, num(s.volume_cv)),
          h('td', { class: 'num' }, num(s.pairwise_dice)),
          h('td', { class: 'num' }, num(s.mean_entropy)),
          h('td', { class: 'num' }, num(s.mean_mutual_information)),
          h('td', {}, over.length ? over.map((t) => h('div', {}, reason(t, labelName))) : '–'),
        );
      })),
    );
  }

  function render() {
    const studyWide = kase.thresholds_crossed.filter((t) => t.label == null);
    mount(
      root,
      h(
        'section',
        { class: 'case', dataset: { id: kase.id } },
        h('div', { class: 'toolbar' },
          h('a', { href: '#/queue' }, '← Queue'),
          h('h1', { title: kase.study_key }, `Case ${kase.id}`),
          h('span', { class: `badge ${kase.priority}` }, kase.priority),
          h('span', { class: 'muted', title: kase.study_key }, `study ${shortKey(kase.study_key)} · ${kase.model} · ${kase.scanner ?? 'scanner unknown'} · uncertainty ${num(kase.uncertainty)} · ${age(kase.created_at)} old`),
          h('span', { class: 'spacer' }),
          h('button', { type: 'button', id: 'next', onclick: claimNext }, 'Next case ', h('kbd', {}, 'n'))),
        h('div', { class: 'reasons' }, 'Sent to review: ',
          kase.reasons.map((r) => h('span', { class: 'reason' }, reason(r, labelName)))),
        h(
          'div',
          { class: 'case-body' },
          h(
            'div',
            { class: 'viewer-pane' },
            h('div', { class: 'controls' },
              h('label', {}, 'View ', view),
              h('label', {}, 'Mask opacity ', opacity),
              h('label', {}, 'Uncertainty ', heatmap),
              h('label', {}, crosshair, ' crosshair'),
              h('span', { class: 'legend' }, kase.labels.filter((l) => l.value !== 0).map((l) =>
                h('span', {}, h('span', { class: 'swatch', style: `background: ${rgb(l.color)}` }), words(l.name))))),
            viewerBox,
            h('div', { class: 'slices' }, sliders.map((s) => s.el)),
            location,
          ),
          h(
            'aside',
            { class: 'side' },
            h('h2', {}, 'Structures'),
            structuresTable(),
            studyWide.length ? h('div', {}, h('h2', {}, 'Study thresholds crossed'), h('ul', {}, studyWide.map((t) => h('li', {}, reason(t, labelName))))) : null,
            h('h2', {}, 'Decision'),
            claimNote,
            h('div', { class: 'actions' }, buttons.approve, buttons.reject, buttons.escalate, buttons.release),
            commentBox,
            h('button', { type: 'button', id: 'add-comment', onclick: addComment }, 'Add comment'),
            h('h2', {}, 'Corrected mask'),
            h('div', { class: 'actions' }, upload, uploadButton),
            h('h2', {}, 'Comments'),
            commentList,
          ),
        ),
      ),
    );
    showComments();
    refreshActions();
  }

  (async () => {
    try {
      kase = ctx.takeCase(id) ?? (await api.item(id));
      if (left) return;
      render();
      await startViewer();
    } catch (e) {
      if (left) return;
      mount(root, h('p', { class: 'error' }, `Case ${id}: ${e.message}`), h('a', { href: '#/queue' }, '← Queue'));
      ctx.fail(e);
    }
  })();

  return {
    leave() {
      left = true;
      viewer?.destroy();
    },
    onKey(e) {
      const action = { a: 'approve', r: 'reject', e: 'escalate' }[e.key];
      if (action) decide(action);
      else if (e.key === 'n') claimNext();
    },
  };
}
