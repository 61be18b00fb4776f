// format.test.mjs — unit tests of src/format.js (pure functions): `node --test web/tests/`.

import assert from 'node:assert/strict';
import test from 'node:test';
import { age, num, reason, rgb, shortKey, words } from '../src/format.js';

test('age counts whole units since the time', () => {
  const now = Date.parse('2026-11-27T12:00:00Z');
  assert.equal(age('2026-11-27T11:59:15Z', now), '45 s');
  assert.equal(age('2026-11-27T11:30:00Z', now), '30 min');
  assert.equal(age('2026-11-27T07:00:00Z', now), '5 h');
  assert.equal(age('2026-11-24T12:00:00Z', now), '3 d');
  assert.equal(age('2026-11-27T12:00:05Z', now), '0 s', 'a clock slightly ahead is not negative');
  assert.equal(age('yesterday', now), '?');
});

test('num keeps significant digits and marks absent values', () => {
  assert.equal(num(0.079123), '0.0791');
  assert.equal(num(612.345, 4), '612.3');
  assert.equal(num(8.43e-9), '8.43e-9');
  assert.equal(num(0), '0');
  assert.equal(num(null), '–');
  assert.equal(num(undefined), '–');
});

test('reason names the code, the structure, the metric, its value and threshold', () => {
  const names = (v) => ({ 1: 'grey_matter' })[v];
  assert.equal(
    reason({ code: 'out_of_distribution', metric: 'ood_score', label: null, value: 12.0701, threshold: 9.741 }),
    'out of distribution: ood_score 12.1 vs 9.74',
  );
  assert.equal(
    reason({ code: 'structure_uncertain', metric: 'pairwise_dice', label: 1, value: 0.61, threshold: 0.8 }, names),
    'structure uncertain (grey matter): pairwise_dice 0.61 vs 0.8',
  );
  assert.equal(reason({ code: 'uncertainty_unknown', metric: 'study_score', value: null, threshold: 0.05 }), 'uncertainty unknown: study_score unknown vs 0.05');
  assert.equal(reason({ code: 'escalated' }), 'escalated');
});

test('words and rgb', () => {
  assert.equal(words('mutual_information'), 'mutual information');
  assert.equal(rgb([205, 62, 78]), 'rgb(205, 62, 78)');
});

test('shortKey keeps short keys and cuts long ones', () => {
  assert.equal(shortKey('1.2.826.0.1'), '1.2.826.0.1');
  assert.equal(shortKey('47b278ae7a89ea35faca56409b4ad2f48adc24033c4c8d4ee817377f9d78c109'), '47b278ae7a89ea35…');
});
