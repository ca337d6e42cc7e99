// The pieces of the upfirdn2d kernel, shared by the CUDA kernel and the host path. A block works
// on one output tile: it stages the (flipped, gain-scaled) filter and the input window that the
// tile reads in shared memory, then every thread sums the taps of its outputs from there.
#pragma once

#include <algorithm>

#include "common.h"
#include "upfirdn2d.h"

namespace gda {

constexpr int kUpFirDn2dMaxTile = 32;
constexpr int kUpFirDn2dMaxThreads = 256;
constexpr int kUpFirDn2dSharedBytes = 48 * 1024;  // usable without opting in on every GPU

// Shared-memory bytes of the filter, rounded up so the input window after it stays aligned.
GDA_HD int upfirdn2d_filter_bytes(const UpFirDn2dParams& p) {
    return (p.filter_h * p.filter_w * int(sizeof(float)) + 15) / 16 * 16;
}

// Picks the largest output tile (up to 32 x 32) whose input window and filter fit the shared
// memory budget. The window spans ((tile - 1) * down + taps - 1) / up + 2 input pixels per axis:
// enough for every tile origin, whatever its phase relative to `up`.
inline void upfirdn2d_plan(UpFirDn2dParams& p, int acc_bytes) {
    p.tile_w = std::min(kUpFirDn2dMaxTile, p.out_w);
    p.tile_h = std::min(kUpFirDn2dMaxTile, p.out_h);
    for (;;) {
        p.window_w = ((p.tile_w - 1) * p.down_x + p.filter_w - 1) / p.up_x + 2;
        p.window_h = ((p.tile_h - 1) * p.down_y + p.filter_h - 1) / p.up_y + 2;
        p.smem_bytes = upfirdn2d_filter_bytes(p) + p.window_w * p.window_h * acc_bytes;
        if (p.smem_bytes <= kUpFirDn2dSharedBytes || (p.tile_w == 1 && p.tile_h == 1)) break;
        if (p.tile_w >= p.tile_h)
            p.tile_w = (p.tile_w + 1) / 2;
        else
            p.tile_h = (p.tile_h + 1) / 2;
    }
    const int64_t tiles_x = (p.out_w + p.tile_w - 1) / p.tile_w;
    const int64_t tiles_y = (p.out_h + p.tile_h - 1) / p.tile_h;
    p.tiles = tiles_x * tiles_y;
    p.threads = std::min(kUpFirDn2dMaxThreads, (p.tile_w * p.tile_h + 31) / 32 * 32);
}

// Where a tile starts: its first output pixel and the first input pixel of its window.
struct TileOrigin {
    int oy, ox, iy, ix;
};

GDA_HD TileOrigin upfirdn2d_tile_origin(const UpFirDn2dParams& p, int64_t tile) {
    const int tiles_x = (p.out_w + p.tile_w - 1) / p.tile_w;
    TileOrigin o;
    o.oy = int(tile / tiles_x) * p.tile_h;
    o.ox = int(tile % tiles_x) * p.tile_w;
    // Tap 0 of the first output sits at oy * down - pad0 in the upsampled image; the first input
    // pixel it can reach is the first multiple of `up` at or after that.
    o.iy = ceil_div(o.oy * p.down_y - p.pad_y0, p.up_y);
    o.ix = ceil_div(o.ox * p.down_x - p.pad_x0, p.up_x);
    return o;
}

// Stages filter tap k as the kernel uses it: flipped for convolution, gain folded in.
GDA_HD void upfirdn2d_load_filter(const UpFirDn2dParams& p, float* sf, int k) {
    const int i = k / p.filter_w, j = k % p.filter_w;
    const int src = p.flip ? k : (p.filter_h - 1 - i) * p.filter_w + (p.filter_w - 1 - j);
    sf[k] = p.f[src] * p.gain;
}

// Stages pixel k of the tile's input window; pixels outside the image are the zero padding.
template <typename T, typename A>
GDA_HD void upfirdn2d_load_input(const UpFirDn2dParams& p, const T* x, const TileOrigin& o, A* sx,
                                 int k) {
    const int iy = o.iy + k / p.window_w, ix = o.ix + k % p.window_w;
    const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
    sx[k] = inside ? static_cast<A>(x[iy * p.x_stride[2] + ix * p.x_stride[3]]) : A(0);
}

// Computes output k of the tile. Only taps that land on a multiple of `up` (a real input pixel,
// not an inserted zero) contribute, so the loops start at the right phase and step by `up`.
template <typename T, typename A>
GDA_HD void upfirdn2d_output(const UpFirDn2dParams& p, T* y, const TileOrigin& o, const A* sx,
                             const float* sf, int k) {
    const int oy = o.oy + k / p.tile_w, ox = o.ox + k % p.tile_w;
    if (oy >= p.out_h || ox >= p.out_w) return;
    const int ay = oy * p.down_y - p.pad_y0, ax = ox * p.down_x - p.pad_x0;
    const int i0 = pos_mod(-ay, p.up_y), j0 = pos_mod(-ax, p.up_x);
    A acc = A(0);
    for (int i = i0; i < p.filter_h; i += p.up_y) {
        const A* row = sx + ((ay + i) / p.up_y - o.iy) * p.window_w;  // exact division
        const float* taps = sf + i * p.filter_w;
        for (int j = j0; j < p.filter_w; j += p.up_x)
            acc += row[(ax + j) / p.up_x - o.ix] * static_cast<A>(taps[j]);
    }
    y[oy * p.y_stride[2] + ox * p.y_stride[3]] = static_cast<T>(acc);
}

// Offset of plane (n * channels + c) in a tensor with the given strides.
GDA_HD int64_t upfirdn2d_plane_offset(const int64_t* stride, int64_t plane, int channels) {
    return (plane / channels) * stride[0] + (plane % channels) * stride[1];
}

}  // namespace gda
