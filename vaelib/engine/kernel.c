/* One epoch of many independent VAE trainings: the CPU kernel behind vaelib.engine.

   vaelib/engine/_generic.py computes the same with the objectives' and models' own PyTorch code
   (the reference, and the path for what this kernel does not cover). Here the work of one run stays
   in cache: a minibatch (in chunks of
   at most CHUNK points) goes forward and backward through the encoder and decoder layer by layer,
   every array laid out feature by feature with 8 points to a vector, then the run's optimiser
   step follows. The runs are independent, so each thread trains whole runs through the whole
   epoch without waiting for the others (plain POSIX threads, started per epoch: nothing spins
   between epochs while PyTorch draws the next epoch's data order and noise).

   Layouts (float32, contiguous):
     x       (points, features)        the data
     order   (runs, points) int64      each run's data order for this epoch: its minibatches are
                                       consecutive slices of it
     eps     (runs, points, latent)    each run's reparameterisation noise for this epoch, in the
                                       order it is used
     theta   the parameters, piece after piece; piece i holds every run's copy, run r's at
             piece_offset[i] + r * piece_numel[i]. A weight is (in, out), a bias (out), alpha last.
             adam_m and adam_v are laid out like theta.
     layer_spec     per linear layer, encoder first, N_LAYER_FIELDS int64 (LAYER_IN, LAYER_OUT, ...):
                    in, out, the activation after it, and the pieces of its weight, bias, a and b
                    (-1 if none).
     layer_constant per linear layer: ELU's alpha.
     run_settings   per run, N_SETTINGS floats (S_RECON_WEIGHT, ...: _layout.py's SETTINGS): the objective's
                    Form, loss = recon_weight R' + kl_weight KL + alpha (constraint_recon R' +
                    constraint_kl KL - bound), with KL summed over the batch (kl_summed) or averaged
                    and R' = R, or the Gaussian NLL under the best variance (calibrated); then the
                    alpha rule: alpha's gradient sign, reflect / project a negative alpha, or GECO's
                    multiplicative update (ema, rate, floor, ceiling).
     multiplier_state (runs, N_MULTIPLIER_STATE)  GECO's moving average of the constraint and its
                                       update count (MULTIPLIER_AVERAGE, MULTIPLIER_UPDATES)
     terms   (steps, runs, N_STEP_COLUMNS): R, the batch-averaged KL and alpha (before the step), per
             step (STEP_RECON, STEP_KL, STEP_ALPHA); vaelib.objectives makes the named terms from them.
     decoder        DECODER_GAUSSIAN: R is the squared error of the decoder's output (its mean);
                    DECODER_BERNOULLI: the output is each pixel's logit l and R the Bernoulli NLL,
                    summed over features: (1 - x) l - log sigmoid(l), as PyTorch's
                    binary_cross_entropy_with_logits computes it, with gradient sigmoid(l) - x.
   Returns 0, or 1 for sizes beyond the fixed limits, 2 when memory runs out.

   The contract with the Python side (the names S_*, STEP_*, LAYER_*, ACT_*, OPT_*, DECODER_*,
   MULTIPLIER_*, N_*, MAX_LAYERS, MAX_PIECES and Adam's constants ADAM_*) is not defined here: it comes from
   vaelib/engine/_layout.py as -D flags (_layout.kernel_defines), so that one source states it. A
   name missing there stops the compiler with that name.
*/
#if !defined(N_SETTINGS) || !defined(N_STEP_COLUMNS) || !defined(N_LAYER_FIELDS) || !defined(MAX_LAYERS)
#error "kernel.c takes its contract from vaelib/engine/_layout.py: build it through vaelib.engine._kernel"
#endif
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8
#define CHUNK 128
#define MAX_THREADS 256

typedef float vf __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(LANES * sizeof(int32_t))));


static inline vf splat(float a) { return (vf){a, a, a, a, a, a, a, a}; }  /* LANES == 8 */
static inline vf vselect(vi mask, vf if_true, vf if_false) {
    return (vf)(((vi)if_true & mask) | ((vi)if_false & ~mask));
}
static inline float lane_sum(vf v) {  /* pairwise: halves, quarters, eighths */
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
    return v[0];
}

/* exp(r) - 1 for |r| <= ln(2)/2: r + r^2 P(r), P of degree 5 (Cephes' expf coefficients);
   accurate for small r, where exp(r) - 1 would cancel. */
static inline vf expm1_reduced(vf r) {
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r;
}

/* The whole number n nearest to x / ln 2 (for -88 <= x <= 88.3), and r = x - n ln 2 with
   |r| <= ln(2)/2; ln 2 is split in two parts so that n times the first is exact. Rounding is
   floor(x / ln 2 + 1/2): truncation, corrected where that is negative unless x >= 0 is known. */
static inline vf reduce_ln2(vf x, vf *r, int non_negative) {
    vf t = x * 1.44269504088896341f + 0.5f;
    vf n = __builtin_convertvector(__builtin_convertvector(t, vi), vf);
    if (!non_negative) n = vselect(n > t, n - 1.0f, n);
    *r = x - n * 0.693359375f + n * 2.12194440e-4f;
    return n;
}

/* 2^n for whole numbers n in [-126, 127], built in the exponent bits. */
static inline vf exp2_whole(vf n) {
    return (vf)((__builtin_convertvector(n, vi) + 127) << 23);
}

/* exp(x) = 2^n (1 + expm1(r)). About 1 unit in the last place; infinite beyond float's range,
   as exp's own result is (an overflow must stay visible), about 1e-38 below -87.3 (where exp
   gives a subnormal or zero), NaN for NaN. */
static inline vf vexp(vf x) {
    vi overflow = x > 88.72284f;
    x = vselect(x < -87.3f, splat(-87.3f), x);
    x = vselect(x > 88.3f, splat(88.3f), x);
    vf r, n = reduce_ln2(x, &r, 0);
    return vselect(overflow, splat(INFINITY), (expm1_reduced(r) + 1.0f) * exp2_whole(n));
}

/* tanh(x) = sign(x) t / (t + 2) with t = expm1(2|x|) = 2^n (1 + expm1(r)) - 1, computed as
   2^n expm1(r) + (2^n - 1) so that small |x| loses nothing to cancellation. About 2 units in
   the last place. */
static inline vf vtanh(vf x) {
    vi sign = (vi)x & (vi)splat(-0.0f);
    vf y = (vf)((vi)x ^ sign) * 2.0f;
    y = vselect(y > 88.3f, splat(88.3f), y);
    vf r, n = reduce_ln2(y, &r, 1);
    vf scale = exp2_whole(n);
    vf t = expm1_reduced(r) * scale + (scale - 1.0f);
    return (vf)((vi)(t / (t + 2.0f)) | sign);
}

/* log(x) for x in [1, 2] (Cephes' logf): x = 2^e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)),
   log(1 + f) = f - f^2/2 + f^3 P(f); about 1 unit in the last place. */
static inline vf vlog_1_2(vf x) {
    vi upper = x > 1.41421356f;
    vf e = vselect(upper, splat(1.0f), splat(0.0f));
    vf f = vselect(upper, 0.5f * x - 1.0f, x - 1.0f);  /* both exact */
    vf z = f * f;
    vf y = splat(7.0376836292e-2f);
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += e * -2.12194440e-4f;
    y += -0.5f * z;
    return (f + y) + e * 0.693359375f;
}

/* log(1 + z) for z in [0, 1], accurate for small z too: u = 1 + z rounded, then
   log(u) z / (u - 1), which cancels the rounding of u (Goldberg); z itself where u rounds to 1. */
static inline vf vlog1p_unit(vf z) {
    vf u = 1.0f + z;
    vf d = u - 1.0f;
    vi tiny = d == 0.0f;
    vf ratio = z / vselect(tiny, splat(1.0f), d);
    return vselect(tiny, z, vlog_1_2(u) * ratio);
}

typedef struct {
    int64_t in, out, act, w, b, pa, pb;
    float elu_alpha;
} Layer;

typedef struct {
    int64_t runs, points, features, latent, n_layers, n_encoder, n_pieces, run_numel, decoder;
    const int64_t *piece_offset, *piece_numel, *piece_start;
    const Layer *layers;
} Net;

/* One thread's arrays for a chunk of points: per layer its input, pre-activation and the
   activation's saved values (tanh), as (rows, vectors); the run's gradient; two gradient buffers. */
typedef struct {
    vf *h[MAX_LAYERS + 1], *u[MAX_LAYERS], *t[MAX_LAYERS], *d1, *d2, *enc, *std, *var, *noise;
    vf *memory;
    float *grad;
} Scratch;

static int scratch_alloc(Scratch *s, const Net *net) {
    int64_t vectors = CHUNK / LANES, rows = 0, widest = 0;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const Layer *L = &net->layers[l];
        rows += L->in + 2 * L->out;
        widest = L->in > widest ? L->in : widest;
        widest = L->out > widest ? L->out : widest;
    }
    rows += 2 * widest + 5 * net->latent;
    s->memory = aligned_alloc(sizeof(vf), sizeof(vf) * vectors * rows);
    s->grad = malloc(sizeof(float) * net->run_numel);
    if (!s->memory || !s->grad) return 0;
    vf *next = s->memory;
    for (int64_t l = 0; l < net->n_layers; l++) {
        s->h[l] = next; next += net->layers[l].in * vectors;
        s->u[l] = next; next += net->layers[l].out * vectors;
        s->t[l] = next; next += net->layers[l].out * vectors;
    }
    s->d1 = next; next += widest * vectors;
    s->d2 = next; next += widest * vectors;
    s->enc = next; next += 2 * net->latent * vectors;
    s->std = next; next += net->latent * vectors;
    s->var = next; next += net->latent * vectors;
    s->noise = next;
    return 1;
}

static void scratch_free(Scratch *s) {
    free(s->memory);
    free(s->grad);
}

static inline float *piece(const Net *net, float *theta, int64_t i, int64_t r) {
    return theta + net->piece_offset[i] + r * net->piece_numel[i];
}

static inline float layer_scalar(const Net *net, float *theta, int64_t i, int64_t r) {
    return i >= 0 ? *piece(net, theta, i, r) : 1.0f;
}

/* y[i] = init[i] + sum_k a[k * stride_k + i * stride_i] x[k] for rows of nv vectors of points: a
   small matrix of scalars times a matrix of point vectors, four vectors at a time so that each
   scalar is loaded once per four multiply-adds. */
static void combine_rows(int64_t n_out, int64_t n_in, const float *a, int64_t stride_k, int64_t stride_i,
                         const float *init, const vf *x, int64_t nv, vf *y) {
    for (int64_t i = 0; i < n_out; i++) {
        vf start = splat(init ? init[i] : 0.0f);
        int64_t v = 0;
        for (; v + 4 <= nv; v += 4) {
            vf y0 = start, y1 = start, y2 = start, y3 = start;
            for (int64_t k = 0; k < n_in; k++) {
                float c = a[k * stride_k + i * stride_i];
                const vf *xk = x + k * nv + v;
                y0 += c * xk[0];
                y1 += c * xk[1];
                y2 += c * xk[2];
                y3 += c * xk[3];
            }
            y[i * nv + v] = y0;
            y[i * nv + v + 1] = y1;
            y[i * nv + v + 2] = y2;
            y[i * nv + v + 3] = y3;
        }
        for (; v < nv; v++) {
            vf acc = start;
            for (int64_t k = 0; k < n_in; k++) acc += a[k * stride_k + i * stride_i] * x[k * nv + v];
            y[i * nv + v] = acc;
        }
    }
}

/* grad[k * n_b + j] += sum over points of a[k] b[j]: the weight gradient, four rows of b at a time. */
static void add_outer_sums(int64_t n_a, int64_t n_b, const vf *a, const vf *b, int64_t nv, float *grad) {
    for (int64_t k = 0; k < n_a; k++) {
        int64_t j = 0;
        for (; j + 4 <= n_b; j += 4) {
            vf s0 = splat(0.0f), s1 = s0, s2 = s0, s3 = s0;
            for (int64_t v = 0; v < nv; v++) {
                vf av = a[k * nv + v];
                s0 += av * b[j * nv + v];
                s1 += av * b[(j + 1) * nv + v];
                s2 += av * b[(j + 2) * nv + v];
                s3 += av * b[(j + 3) * nv + v];
            }
            grad[k * n_b + j] += lane_sum(s0);
            grad[k * n_b + j + 1] += lane_sum(s1);
            grad[k * n_b + j + 2] += lane_sum(s2);
            grad[k * n_b + j + 3] += lane_sum(s3);
        }
        for (; j < n_b; j++) {
            vf acc = splat(0.0f);
            for (int64_t v = 0; v < nv; v++) acc += a[k * nv + v] * b[j * nv + v];
            grad[k * n_b + j] += lane_sum(acc);
        }
    }
}

/* out = act(W^T h + bias) for nv vectors of points; u and t keep what the backward pass needs. */
static void layer_forward(const Layer *L, const float *w, const float *bias, float a, float b, int64_t nv,
                          const vf *h, vf *u, vf *t, vf *out) {
    combine_rows(L->out, L->in, w, L->out, 1, bias, h, nv, u);
    int64_t n = L->out * nv;
    switch (L->act) {  /* one loop per activation: nothing to decide inside the loops */
    case ACT_PTANH:
        for (int64_t i = 0; i < n; i++) { t[i] = vtanh(b * u[i]); out[i] = a * t[i]; }
        break;
    case ACT_TANH:
        for (int64_t i = 0; i < n; i++) t[i] = out[i] = vtanh(u[i]);
        break;
    case ACT_RELU:
        for (int64_t i = 0; i < n; i++) t[i] = out[i] = vselect(u[i] > 0.0f, u[i], splat(0.0f));
        break;
    case ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) t[i] = out[i] = 1.0f / (1.0f + vexp(-u[i]));
        break;
    case ACT_ELU:
        for (int64_t i = 0; i < n; i++) t[i] = out[i] = vselect(u[i] > 0.0f, u[i], L->elu_alpha * (vexp(u[i]) - 1.0f));
        break;
    case ACT_NONE:
    case ACT_IDENTITY:
    default:
        for (int64_t i = 0; i < n; i++) out[i] = u[i];
    }
}

/* From dL/d(output) in d: the layer's gradients (added to grad) and, unless d_in is NULL,
   dL/d(input) in d_in. d is overwritten with dL/du. */
static void layer_backward(const Layer *L, const float *w, float a, float b, int64_t nv, const vf *h,
                           const vf *u, const vf *t, vf *d, float *grad_w, float *grad_b, float *grad_a,
                           float *grad_pb, vf *d_in) {
    int64_t n = L->out * nv;
    switch (L->act) {
    case ACT_PTANH: {
        vf sum_a = splat(0.0f), sum_b = splat(0.0f);
        for (int64_t i = 0; i < n; i++) {
            sum_a += d[i] * t[i];
            vf dv = d[i] * a * (1.0f - t[i] * t[i]);
            sum_b += dv * u[i];
            d[i] = dv * b;
        }
        *grad_a += lane_sum(sum_a);
        *grad_pb += lane_sum(sum_b);
        break;
    }
    case ACT_TANH:
        for (int64_t i = 0; i < n; i++) d[i] *= 1.0f - t[i] * t[i];
        break;
    case ACT_RELU:
        for (int64_t i = 0; i < n; i++) d[i] = vselect(t[i] > 0.0f, d[i], splat(0.0f));
        break;
    case ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) d[i] *= (1.0f - t[i]) * t[i];
        break;
    case ACT_ELU:
        for (int64_t i = 0; i < n; i++) d[i] = vselect(u[i] > 0.0f, d[i], d[i] * (t[i] + L->elu_alpha));
        break;
    default:
        break;
    }
    for (int64_t j = 0; j < L->out; j++) {
        vf acc = splat(0.0f);
        for (int64_t v = 0; v < nv; v++) acc += d[j * nv + v];
        grad_b[j] += lane_sum(acc);
    }
    add_outer_sums(L->in, L->out, h, d, nv, grad_w);
    if (d_in) combine_rows(L->in, L->out, w, 1, L->out, NULL, d, nv, d_in);
}

static void layers_forward(const Net *net, Scratch *s, float *theta, int64_t r, int64_t first, int64_t last,
                           int64_t nv, vf *out) {
    for (int64_t l = first; l < last; l++) {
        const Layer *L = &net->layers[l];
        layer_forward(L, piece(net, theta, L->w, r), piece(net, theta, L->b, r), layer_scalar(net, theta, L->pa, r),
                      layer_scalar(net, theta, L->pb, r), nv, s->h[l], s->u[l], s->t[l],
                      l + 1 < last ? s->h[l + 1] : out);
    }
}

static void layer_gradient(const Net *net, Scratch *s, float *theta, int64_t r, int64_t l, int64_t nv, vf *d,
                           vf *d_in) {
    const Layer *L = &net->layers[l];
    float ignored = 0.0f;
    layer_backward(L, piece(net, theta, L->w, r), layer_scalar(net, theta, L->pa, r),
                   layer_scalar(net, theta, L->pb, r), nv, s->h[l], s->u[l], s->t[l], d,
                   s->grad + net->piece_start[L->w], s->grad + net->piece_start[L->b],
                   L->pa >= 0 ? s->grad + net->piece_start[L->pa] : &ignored,
                   L->pb >= 0 ? s->grad + net->piece_start[L->pb] : &ignored, d_in);
}

/* Rows of points into feature-major vectors: dst[c][v] lane p = src[point i][c], i = v * LANES + p,
   where point i is index[i] (or i itself when index is NULL); lanes past count are zero. */
static inline __attribute__((always_inline)) void load_points(vf *dst, const float *src, const int64_t *index, int64_t columns, int64_t count,
                                                                  int64_t nv) {
    for (int64_t v = 0; v < nv; v++)
        for (int p = 0; p < LANES; p++) {
            int64_t i = v * LANES + p;
            if (i >= count) {
                for (int64_t c = 0; c < columns; c++) dst[c * nv + v][p] = 0.0f;
                continue;
            }
            const float *row = src + (index ? index[i] : i) * columns;
            for (int64_t c = 0; c < columns; c++) dst[c * nv + v][p] = row[c];
        }
}

/* The start of both passes over a chunk of `count` points at offset `at` of the epoch's order: which
   lanes hold points (the last vector may be partly padding), the points and their noise loaded into
   s->h[0] and s->noise, and the encoder's output (mu, logvar) in s->enc. Returns the vector count. */
static inline __attribute__((always_inline)) int64_t encode_chunk(const Net *net, Scratch *s, int64_t r, int64_t at, int64_t count, const float *x,
                            const int64_t *order, const float *eps, float *theta, vi *valid) {
    int64_t L = net->latent, nv = (count + LANES - 1) / LANES;
    for (int64_t v = 0; v < nv; v++)
        for (int p = 0; p < LANES; p++) valid[v][p] = v * LANES + p < count ? -1 : 0;
    load_points(s->h[0], x, order + r * net->points + at, net->features, count, nv);
    load_points(s->noise, eps + (r * net->points + at) * L, NULL, L, count, nv);
    layers_forward(net, s, theta, r, 0, net->n_encoder, nv, s->enc);
    return nv;
}

/* Run r's forward pass over [first, first + size) with no gradient: the batch's summed squared
   error, which the calibrated likelihood needs before any gradient (its variance is R / D). */
__attribute__((noinline)) static float squared_error_sum(const Net *net, Scratch *s, int64_t r, int64_t first, int64_t size, const float *x,
                               const int64_t *order, const float *eps, float *theta) {
    int64_t ne = net->n_encoder, nl = net->n_layers, L = net->latent, F = net->features;
    vf total = splat(0.0f);
    for (int64_t c0 = 0; c0 < size; c0 += CHUNK) {
        int64_t count = size - c0 < CHUNK ? size - c0 : CHUNK;
        vi valid[CHUNK / LANES];
        int64_t nv = encode_chunk(net, s, r, first + c0, count, x, order, eps, theta, valid);
        vf *x0 = s->h[0], *z = s->h[ne];
        for (int64_t q = 0; q < L * nv; q++) z[q] = s->enc[q] + vexp(0.5f * s->enc[L * nv + q]) * s->noise[q];
        layers_forward(net, s, theta, r, ne, nl, nv, s->d1);
        for (int64_t q = 0; q < F * nv; q++) {
            vf diff = x0[q] - s->d1[q];
            total += vselect(valid[q % nv], diff * diff, splat(0.0f));
        }
    }
    return lane_sum(total);
}

/* d(R')/dR: 1, or 1 / (2 sigma^2) under the calibrated likelihood, sigma^2 = max(R / D, floor). */
static inline float likelihood_slope(const float *settings, float recon, int64_t features) {
    if (settings[S_CALIBRATED] == 0.0f) return 1.0f;
    float variance = recon / (float)features;
    if (variance < settings[S_MIN_VARIANCE]) variance = settings[S_MIN_VARIANCE];
    return 1.0f / (2.0f * variance);
}

/* R' itself: R, or (D/2) log(2 pi sigma^2) + R / (2 sigma^2), as vaelib.objectives.calibrated_nll. */
static inline float likelihood_term(const float *settings, float recon, int64_t features) {
    if (settings[S_CALIBRATED] == 0.0f) return recon;
    float variance = recon / (float)features;
    if (variance < settings[S_MIN_VARIANCE]) variance = settings[S_MIN_VARIANCE];
    return 0.5f * (float)features * logf(2.0f * 3.14159265358979f * variance) + recon / (2.0f * variance);
}

/* One minibatch step of run r over the epoch's points [first, first + size): gradient into
   s->grad; R, the averaged KL and alpha into out[0..2]; returns the constraint value h. */
static float run_step(const Net *net, Scratch *s, int64_t r, int64_t first, int64_t size, const float *x,
                      const int64_t *order, const float *eps, float *theta, const float *settings, float *out) {
    int64_t ne = net->n_encoder, nl = net->n_layers, L = net->latent, F = net->features;
    float alpha = *piece(net, theta, net->n_pieces - 1, r);
    float kl_scale = settings[S_KL_SUMMED] != 0.0f ? (float)size : 1.0f;
    float recon_weight = settings[S_RECON_WEIGHT] + alpha * settings[S_CONSTRAINT_RECON];
    float kl_weight = settings[S_KL_WEIGHT] + alpha * settings[S_CONSTRAINT_KL];
    float d_kl = kl_weight * kl_scale / (float)size;
    /* The calibrated likelihood's slope needs the whole batch's R first: with one chunk the forward
       pass below has it before any gradient, with more a forward-only pass finds it. */
    int calibrated = settings[S_CALIBRATED] != 0.0f;
    float d_recon = recon_weight / (float)size;
    if (calibrated && size > CHUNK)
        d_recon *= likelihood_slope(settings, squared_error_sum(net, s, r, first, size, x, order, eps, theta) /
                                              (float)size, F);
    vf recon_sum = splat(0.0f), kl_sum = splat(0.0f);
    memset(s->grad, 0, sizeof(float) * net->run_numel);

    for (int64_t c0 = 0; c0 < size; c0 += CHUNK) {
        int64_t count = size - c0 < CHUNK ? size - c0 : CHUNK;
        vi valid[CHUNK / LANES];
        int64_t nv = encode_chunk(net, s, r, first + c0, count, x, order, eps, theta, valid);
        vf *x0 = s->h[0], *z = s->h[ne];
        for (int64_t q = 0; q < L * nv; q++) {  /* z = mu + exp(logvar / 2) eps, and the KL */
            vf mu = s->enc[q], logvar = s->enc[L * nv + q];
            s->std[q] = vexp(0.5f * logvar);
            s->var[q] = vexp(logvar);
            z[q] = mu + s->std[q] * s->noise[q];
            kl_sum += vselect(valid[q % nv], 0.5f * (mu * mu + s->var[q] - 1.0f - logvar), splat(0.0f));
        }
        vf *d = s->d1, *d_next = s->d2;
        layers_forward(net, s, theta, r, ne, nl, nv, d);
        /* dL/dx_hat = w R'(R) 2 (x_hat - x) / batch; the calibrated slope R'(R) of a one-chunk batch
           is known only once its error is summed, so it scales the gradient afterwards */
        int slope_after = calibrated && size <= CHUNK;
        float scale = slope_after ? 1.0f : d_recon;
        if (net->decoder == DECODER_BERNOULLI) {  /* d holds logits l; x0 the targets (never calibrated) */
            for (int64_t q = 0; q < F * nv; q++) {
                vf l = d[q], target = x0[q];
                vf e = vexp((vf)((vi)l | (vi)splat(-0.0f)));  /* exp(-|l|) */
                vf log_sigmoid = vselect(l < 0.0f, l, splat(0.0f)) - vlog1p_unit(e);
                vf nll = (1.0f - target) * l - log_sigmoid;
                vf sigmoid = vselect(l >= 0.0f, 1.0f / (1.0f + e), e / (1.0f + e));
                recon_sum += vselect(valid[q % nv], nll, splat(0.0f));
                d[q] = vselect(valid[q % nv], scale * (sigmoid - target), splat(0.0f));
            }
        } else {
            for (int64_t q = 0; q < F * nv; q++) {
                vf diff = x0[q] - d[q];
                recon_sum += vselect(valid[q % nv], diff * diff, splat(0.0f));
                d[q] = vselect(valid[q % nv], scale * (-2.0f * diff), splat(0.0f));
            }
        }
        if (slope_after) {
            d_recon *= likelihood_slope(settings, lane_sum(recon_sum) / (float)size, F);
            for (int64_t q = 0; q < F * nv; q++) d[q] *= d_recon;
        }
        for (int64_t l = nl - 1; l >= 0; l--) {
            layer_gradient(net, s, theta, r, l, nv, d, l == 0 ? NULL : d_next);
            if (l == ne) {  /* dL/dz into dL/dmu and dL/dlogvar, each with the KL's own gradient */
                for (int64_t q = 0; q < L * nv; q++) {
                    vf dz = d_next[q];
                    d[q] = dz + vselect(valid[q % nv], d_kl * s->enc[q], splat(0.0f));
                    d[L * nv + q] = dz * s->noise[q] * s->std[q] * 0.5f +
                                    vselect(valid[q % nv], d_kl * 0.5f * (s->var[q] - 1.0f), splat(0.0f));
                }
            } else {
                vf *swap = d;
                d = d_next;
                d_next = swap;
            }
        }
    }
    float recon = lane_sum(recon_sum) / (float)size;
    float kl = lane_sum(kl_sum) / (float)size;
    float constraint = settings[S_CONSTRAINT_RECON] * likelihood_term(settings, recon, F) +
                       settings[S_CONSTRAINT_KL] * (kl * kl_scale) - settings[S_BOUND];
    s->grad[net->piece_start[net->n_pieces - 1]] = settings[S_GRADIENT_SIGN] * constraint;
    out[STEP_RECON] = recon;
    out[STEP_KL] = kl;
    out[STEP_ALPHA] = alpha;
    return constraint;
}

/* torch.optim.Adam's (or SGD's) update of run r's parameters, in the same arithmetic order, then
   the alpha rule (vaelib.objectives.update_multiplier): reflect a step that went below 0 about the
   old value, project onto >= 0, or GECO's multiplicative step on the constraint's moving average. */
static void run_update(const Net *net, Scratch *s, int64_t r, float *theta, float *m, float *v, int64_t optimizer,
                       float lr, float step_size, float bc2_sqrt, const float *settings, float constraint,
                       float *multiplier_state) {
    float *alpha = piece(net, theta, net->n_pieces - 1, r);
    float alpha_before = *alpha;
    for (int64_t i = 0; i < net->n_pieces; i++) {
        float *th = piece(net, theta, i, r), *mi = piece(net, m, i, r), *vi_ = piece(net, v, i, r);
        const float *g = s->grad + net->piece_start[i];
        for (int64_t e = 0; e < net->piece_numel[i]; e++) {
            if (optimizer == OPT_SGD) {
                th[e] = th[e] + -lr * g[e];
                continue;
            }
            mi[e] = mi[e] + ADAM_AVERAGE_WEIGHT * (g[e] - mi[e]);
            vi_[e] = vi_[e] * ADAM_BETA2 + ADAM_SQUARE_WEIGHT * g[e] * g[e];
            th[e] = th[e] + step_size * mi[e] / (sqrtf(vi_[e]) / bc2_sqrt + ADAM_EPS);
        }
    }
    if (settings[S_REFLECT] != 0.0f && *alpha < 0.0f) *alpha = 2.0f * alpha_before - *alpha;
    if (settings[S_PROJECT] != 0.0f && *alpha < 0.0f) *alpha = 0.0f;
    if (settings[S_GECO] != 0.0f) {
        float *state = multiplier_state + N_MULTIPLIER_STATE * r;
        float *average = state + MULTIPLIER_AVERAGE, *count = state + MULTIPLIER_UPDATES;
        *count += 1.0f;
        *average = *count == 1.0f ? constraint : settings[S_EMA] * *average + (1.0f - settings[S_EMA]) * constraint;
        float next = alpha_before * expf(settings[S_RATE] * *average);
        *alpha = fminf(fmaxf(next, settings[S_ALPHA_FLOOR]), settings[S_ALPHA_CEILING]);
    }
}

/* One epoch's work, shared by the threads: each takes the next untrained run until none is left. */
typedef struct {
    const Net *net;
    int64_t steps, optimizer, next_run;
    const int64_t *batch_sizes, *order;
    const float *x, *eps, *run_settings, *step_size, *bc2_sqrt;
    float *theta, *adam_m, *adam_v, *multiplier_state, *terms, lr;
    int out_of_memory;
} Epoch;

static void *train_runs(void *arg) {
    Epoch *e = arg;
    Scratch s;
    if (!scratch_alloc(&s, e->net)) {
        __atomic_store_n(&e->out_of_memory, 1, __ATOMIC_RELAXED);
        scratch_free(&s);
        return NULL;
    }
    for (int64_t r; (r = __atomic_fetch_add(&e->next_run, 1, __ATOMIC_RELAXED)) < e->net->runs;) {
        const float *settings = e->run_settings + N_SETTINGS * r;
        for (int64_t k = 0, first = 0; k < e->steps; first += e->batch_sizes[k], k++) {
            float constraint = run_step(e->net, &s, r, first, e->batch_sizes[k], e->x, e->order, e->eps, e->theta,
                                        settings, e->terms + (k * e->net->runs + r) * N_STEP_COLUMNS);
            run_update(e->net, &s, r, e->theta, e->adam_m, e->adam_v, e->optimizer, e->lr, e->step_size[k],
                       e->bc2_sqrt[k], settings, constraint, e->multiplier_state);
        }
    }
    scratch_free(&s);
    return NULL;
}

int vaelib_train_epoch(int64_t runs, int64_t points, int64_t features, int64_t latent, int64_t steps,
                       const int64_t *batch_sizes, int64_t n_layers, int64_t n_encoder, const int64_t *layer_spec,
                       const float *layer_constant, int64_t n_pieces, const int64_t *piece_offset,
                       const int64_t *piece_numel, const float *x, const int64_t *order, const float *eps,
                       float *theta, float *adam_m, float *adam_v, const float *run_settings, int64_t n_settings,
                       float *multiplier_state, int64_t optimizer, float lr, const float *step_size,
                       const float *bc2_sqrt, float *terms, int64_t decoder, int64_t threads) {
    Layer layers[MAX_LAYERS];
    int64_t piece_start[MAX_PIECES], run_numel = 0;
    if (n_layers > MAX_LAYERS || n_pieces > MAX_PIECES || n_settings != N_SETTINGS) return 1;
    if (optimizer != OPT_ADAM && optimizer != OPT_SGD) return 1;
    if (decoder != DECODER_GAUSSIAN && decoder != DECODER_BERNOULLI) return 1;
    for (int64_t i = 0; i < n_pieces; i++) {
        piece_start[i] = run_numel;
        run_numel += piece_numel[i];
    }
    for (int64_t l = 0; l < n_layers; l++) {
        const int64_t *q = layer_spec + N_LAYER_FIELDS * l;
        layers[l] = (Layer){q[LAYER_IN], q[LAYER_OUT], q[LAYER_ACTIVATION], q[LAYER_WEIGHT], q[LAYER_BIAS],
                            q[LAYER_A], q[LAYER_B], layer_constant[l]};
    }
    Net net = {runs, points, features, latent, n_layers, n_encoder, n_pieces, run_numel, decoder,
               piece_offset, piece_numel, piece_start, layers};
    Epoch epoch = {&net, steps, optimizer, 0, batch_sizes, order, x, eps, run_settings, step_size, bc2_sqrt,
                   theta, adam_m, adam_v, multiplier_state, terms, lr, 0};
    /* the calling thread works too; the others are started for this epoch and joined at its end */
    pthread_t helpers[MAX_THREADS];
    int64_t started = 0;
    for (; started < threads - 1 && started < MAX_THREADS && started < runs - 1; started++)
        if (pthread_create(&helpers[started], NULL, train_runs, &epoch) != 0) break;
    train_runs(&epoch);
    for (int64_t i = 0; i < started; i++) pthread_join(helpers[i], NULL);
    return epoch.out_of_memory ? 2 : 0;
}
