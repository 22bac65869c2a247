using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q8_0 weights · Q8_0 activations over 16-row interleaved tiles (see <see cref="InterleavedSteps"/>), AVX-VNNI.
/// <para>
/// Tile block (544 bytes, 16 GGUF blocks' worth): the 16 rows' f16 scales, then eight 64-byte groups; group j
/// holds, in int32 lane r, quants 4j..4j+3 of row r stored as q + 128 (the sign
/// bit flipped), because vpdpbusd multiplies unsigned weight bytes by signed activation bytes. The +128 comes
/// back out through the seed −128·Σa of each block's integer sums (from the activation sidecar). .NET exposes
/// vpdpbusd only in 256-bit form, so the integer work runs on two halves of eight rows; on AVX-512 machines the
/// float step (and the GEMM tile's token step) joins them into one 512-bit vector.
/// </para>
/// <para>
/// Exact: per row the float arithmetic is the reference's, sumᵢ·(d_w·d_a) added in block order, so every output
/// equals <see cref="QuantReference.Dot"/> bit for bit, alone or in a batch. The sidecar holds d_a·2¹¹², so that
/// d_w·d_a is one multiply of the unscaled f16 bit pattern (<see cref="InterleavedSteps.HalfToSingle"/> without
/// its 2¹¹²): the same real product, rounded once. Rows after the last whole tile keep the GGUF layout and run
/// through an exact per-row loop.
/// </para>
/// </summary>
public sealed unsafe class Q8_0InterleavedMatVec(InstructionSet isa) : MatVecKernel(GgmlType.Q8_0, isa, "AVX-VNNI 16-row interleaved")
{
    private const int BlockBytes = 34;
    private const int TileBlockBytes = TileRows * BlockBytes;

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override int ActivationBytes(int n) => InterleavedSteps.ActivationBytes(StandardActivationBytes(n), n);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) =>
        InterleavedSteps.PrepareActivations(Isa, x, n, state, StandardActivationBytes(n), -128, TwoTo112);

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) =>
        TryRepackTiles(source, rowBytes, rows, n, destination, BlockBytes, 0x8080_8080u);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var sidecar = state + SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        if (Isa >= InstructionSet.Avx512)
            TilesAvx512(weights, rowBytes, tiles, state, sidecar, blocks, y);
        else
            TilesAvx2(weights, rowBytes, tiles, state, sidecar, blocks, y);
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = RowDot(weights + r * rowBytes, state, sidecar, blocks);
    }

    /// <summary>Whole tiles; the float work of all 16 rows in one 512-bit step (one scale conversion, one sum conversion).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        var signAndMagnitude = Vector512.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector512<float> acc = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                PrefetchQ8_0TileBlock(w);
                var seed = Vector256.Create(*(int*)s);
                var a0 = Broadcast(a);
                var a1 = Broadcast(a + 4);
                var a2 = Broadcast(a + 8);
                var a3 = Broadcast(a + 12);
                var a4 = Broadcast(a + 16);
                var a5 = Broadcast(a + 20);
                var a6 = Broadcast(a + 24);
                var a7 = Broadcast(a + 28);
                var low = HalfTileSums(w + 2 * TileRows, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                var high = HalfTileSums(w + 2 * TileRows + 32, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                var dw = (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)w)), 13) & signAndMagnitude).AsSingle();
                acc += Vector512.ConvertToSingle(VectorJoin.Join(low, high)) * (dw * Vector512.Create(*(float*)(s + 4)));
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Whole tiles with 256-bit instructions only (AVX2 + AVX-VNNI machines); the same arithmetic per lane.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx2(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state + 2;
            var s = sidecar;
            Vector256<float> low = default, high = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, s += SidecarBlockBytes)
            {
                var seed = Vector256.Create(*(int*)s);
                var da = Vector256.Create(*(float*)(s + 4));
                var a0 = Broadcast(a);
                var a1 = Broadcast(a + 4);
                var a2 = Broadcast(a + 8);
                var a3 = Broadcast(a + 12);
                var a4 = Broadcast(a + 16);
                var a5 = Broadcast(a + 20);
                var a6 = Broadcast(a + 24);
                var a7 = Broadcast(a + 28);
                var lowSums = HalfTileSums(w + 2 * TileRows, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                var highSums = HalfTileSums(w + 2 * TileRows + 32, seed, a0, a1, a2, a3, a4, a5, a6, a7);
                low += Vector256.ConvertToSingle(lowSums) * (WeightScales(w, signAndMagnitude) * da);
                high += Vector256.ConvertToSingle(highSums) * (WeightScales(w + TileRows, signAndMagnitude) * da);
            }
            low.Store(y + tile * TileRows);
            high.Store(y + tile * TileRows + 8);
        }
    }

    /// <summary>Eight rows' integer sums Σ(q + 128)·a − 128·Σa of one block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> HalfTileSums(byte* quants, Vector256<int> seed,
        Vector256<sbyte> a0, Vector256<sbyte> a1, Vector256<sbyte> a2, Vector256<sbyte> a3,
        Vector256<sbyte> a4, Vector256<sbyte> a5, Vector256<sbyte> a6, Vector256<sbyte> a7) =>
        Dot8(seed,
            Vector256.Load(quants), Vector256.Load(quants + 64), Vector256.Load(quants + 128), Vector256.Load(quants + 192),
            Vector256.Load(quants + 256), Vector256.Load(quants + 320), Vector256.Load(quants + 384), Vector256.Load(quants + 448),
            a0, a1, a2, a3, a4, a5, a6, a7);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var sidecarOffset = SidecarOffset(StandardActivationBytes(n));
        var blocks = n / Block;
        var tiles = rows / TileRows;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            if (Isa >= InstructionSet.Avx512)
                GemmTilesAvx512(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            else
                GemmTilesAvx2(weights, rowBytes, tiles, s0, stateStride, sidecarOffset, blocks, y + t * yStride, yStride);
            for (var r = tiles * TileRows; r < rows; r++)
            {
                for (var k = 0; k < 4; k++)
                {
                    var state = s0 + (long)k * stateStride;
                    y[(t + k) * yStride + r] = RowDot(weights + r * rowBytes, state, state + sidecarOffset, blocks);
                }
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    /// <summary>
    /// GEMM tile, 256-bit only: four tokens × eight rows per pass. Each half tile's quants are loaded once per block
    /// for four tokens; per token the arithmetic is MatVec's, so results do not depend on batching.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void GemmTilesAvx2(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var signAndMagnitude = Vector256.Create(unchecked((int)0x8FFF_FFFF));
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            for (var half = 0; half < 2; half++)
            {
                var w = weights + tile * TileRows * rowBytes;
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
                for (var b = 0; b < blocks; b++, w += TileBlockBytes)
                {
                    var q = w + 2 * TileRows + 32 * half;
                    var v0 = Vector256.Load(q);
                    var v1 = Vector256.Load(q + 64);
                    var v2 = Vector256.Load(q + 128);
                    var v3 = Vector256.Load(q + 192);
                    var v4 = Vector256.Load(q + 256);
                    var v5 = Vector256.Load(q + 320);
                    var v6 = Vector256.Load(q + 384);
                    var v7 = Vector256.Load(q + 448);
                    var dw = WeightScales(w + 16 * half, signAndMagnitude);
                    var o = b * ActivationBlockBytes + 2;
                    var so = sidecarOffset + b * SidecarBlockBytes;
                    c0 = Token(s0 + o, s0 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c0);
                    c1 = Token(s1 + o, s1 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c1);
                    c2 = Token(s2 + o, s2 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c2);
                    c3 = Token(s3 + o, s3 + so, v0, v1, v2, v3, v4, v5, v6, v7, dw, c3);
                }
                var yt = y + tile * TileRows + 8 * half;
                c0.Store(yt);
                c1.Store(yt + yStride);
                c2.Store(yt + 2 * yStride);
                c3.Store(yt + 3 * yStride);
            }
        }
    }

    /// <summary>
    /// GEMM tile on AVX-512 machines: four tokens × all 16 rows per block. The 16 quant vectors stay in registers
    /// for the four tokens, each token's eight activation broadcasts serve both halves, and the float step runs once
    /// on 512 bits; the same arithmetic per lane as MatVec.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void GemmTilesAvx512(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int sidecarOffset, int blocks, float* y, long yStride)
    {
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var q = w + 2 * TileRows;
                var v0 = Vector256.Load(q);
                var v1 = Vector256.Load(q + 64);
                var v2 = Vector256.Load(q + 128);
                var v3 = Vector256.Load(q + 192);
                var v4 = Vector256.Load(q + 256);
                var v5 = Vector256.Load(q + 320);
                var v6 = Vector256.Load(q + 384);
                var v7 = Vector256.Load(q + 448);
                var u0 = Vector256.Load(q + 32);
                var u1 = Vector256.Load(q + 96);
                var u2 = Vector256.Load(q + 160);
                var u3 = Vector256.Load(q + 224);
                var u4 = Vector256.Load(q + 288);
                var u5 = Vector256.Load(q + 352);
                var u6 = Vector256.Load(q + 416);
                var u7 = Vector256.Load(q + 480);
                var dw = (Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)w)), 13)
                    & Vector512.Create(unchecked((int)0x8FFF_FFFF))).AsSingle();
                var o = b * ActivationBlockBytes + 2;
                var so = sidecarOffset + b * SidecarBlockBytes;
                c0 = Token512(s0 + o, s0 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c0);
                c1 = Token512(s1 + o, s1 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c1);
                c2 = Token512(s2 + o, s2 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c2);
                c3 = Token512(s3 + o, s3 + so, v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7, dw, c3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>acc + sumᵢ·(d_w·d_a) for one token and the 16 rows of one block (v: rows 0-7, u: rows 8-15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Token512(byte* a, byte* sidecar,
        Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2, Vector256<byte> v3, Vector256<byte> v4, Vector256<byte> v5, Vector256<byte> v6, Vector256<byte> v7,
        Vector256<byte> u0, Vector256<byte> u1, Vector256<byte> u2, Vector256<byte> u3, Vector256<byte> u4, Vector256<byte> u5, Vector256<byte> u6, Vector256<byte> u7,
        Vector512<float> dw, Vector512<float> acc)
    {
        var seed = Vector256.Create(*(int*)sidecar);
        var a0 = Broadcast(a);
        var a1 = Broadcast(a + 4);
        var a2 = Broadcast(a + 8);
        var a3 = Broadcast(a + 12);
        var a4 = Broadcast(a + 16);
        var a5 = Broadcast(a + 20);
        var a6 = Broadcast(a + 24);
        var a7 = Broadcast(a + 28);
        var low = Dot8(seed, v0, v1, v2, v3, v4, v5, v6, v7, a0, a1, a2, a3, a4, a5, a6, a7);
        var high = Dot8(seed, u0, u1, u2, u3, u4, u5, u6, u7, a0, a1, a2, a3, a4, a5, a6, a7);
        return acc + Vector512.ConvertToSingle(VectorJoin.Join(low, high)) * (dw * Vector512.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>Eight rows' d_w·2⁻¹¹² (exact: the f16 bit pattern moved into an f32; the sidecar's d_a carries the 2¹¹²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WeightScales(byte* scales, Vector256<int> signAndMagnitude) =>
        (Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)scales), 13) & signAndMagnitude).AsSingle();

    /// <summary>acc + sumᵢ·(d_w·d_a) for one token: eight rows of one block, the reference's float order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Token(byte* a, byte* sidecar, Vector256<byte> v0, Vector256<byte> v1, Vector256<byte> v2, Vector256<byte> v3,
        Vector256<byte> v4, Vector256<byte> v5, Vector256<byte> v6, Vector256<byte> v7, Vector256<float> dw, Vector256<float> acc)
    {
        var sums = Dot8(Vector256.Create(*(int*)sidecar), v0, v1, v2, v3, v4, v5, v6, v7,
            Broadcast(a), Broadcast(a + 4), Broadcast(a + 8), Broadcast(a + 12),
            Broadcast(a + 16), Broadcast(a + 20), Broadcast(a + 24), Broadcast(a + 28));
        return acc + Vector256.ConvertToSingle(sums) * (dw * Vector256.Create(*(float*)(sidecar + 4)));
    }

    /// <summary>One GGUF-layout row (after the last whole tile), with the same exact arithmetic per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowDot(byte* row, byte* state, byte* sidecar, int blocks)
    {
        var flip = Vector256.Create((byte)0x80);
        var sum = 0f;
        for (var b = 0; b < blocks; b++)
        {
            var block = row + b * BlockBytes;
            var activation = state + b * ActivationBlockBytes;
            var quants = Vector256.Load(block + 2) ^ flip;
            var sumi = Vector256.Sum(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, quants, Vector256.Load((sbyte*)(activation + 2))))
                + *(int*)(sidecar + b * SidecarBlockBytes);
            sum += sumi * (HalfLookup.ToSingle(block) * HalfLookup.ToSingle(activation));
        }
        return sum;
    }
}
