using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q3_K weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW and GFNI; see <see cref="InterleavedSteps"/>):
/// <see cref="Q2_KInterleavedMatVec"/>'s quant groups with the third bit of every code.
/// <para>
/// Tile super-block (1760 bytes, 16 GGUF super-blocks' worth): the 16 rows' f16 d, the 12 packed scale bytes as three
/// 64-byte groups (group g holds scale bytes 4g..4g+3 of row r in int32 lane r), the 32 hmask bytes as 8 groups, then
/// the 64 qs bytes as 16 groups (group i holds qs bytes 4i..4i+3 of every row). A qs byte of group i = 8h + c carries
/// the two low bits of elements 128h + 32j + l (planes j = 0..3, l = 4c..4c+3), whose third bits are bits 4h + j of
/// hmask byte l: of hmask group c, the one every qs group 8h + c shares.
/// </para>
/// <para>
/// Each plane's code u = q2 + 4·hbit ∈ [0, 7] (the value is u − 4) is built with one GFNI affine transform that moves
/// the hmask bit into place and one masked merge (planes 1 and 3 as 4u, shifted back after the int16 sum: exactly,
/// every term is a multiple of 4); the four groups of a 16-element sub-block add up in int16 (|Σ| ≤ 4·2·28·128
/// &lt; 2¹⁵), and one vpmaddwd against the sub-block's scale ls − 32 gives (ls − 32)·Σu·a in int32. The offset,
/// −4·Σ_s (ls_s − 32)·bsums[s], is eight vpmaddwd of scale pairs against broadcast pairs of the activation sums.
/// The integer sums are the reference's and so is the float step per super-block, (d·d_a)·sumi, so every output
/// equals <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile keep the GGUF layout and run
/// through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q3_KInterleavedMatVec() : InterleavedTileMatVec(GgmlType.Q3_K, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 110;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int ScalesOffset = 2 * TileRows;
    private const int HighBitsOffset = ScalesOffset + 12 * TileRows;
    private const int QuantsOffset = HighBitsOffset + 32 * TileRows;
    private const int GgufScales = 96;
    private const int GgufD = 108;
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>Into L2, 8 KiB ahead, as <see cref="Q4_KInterleavedMatVec"/> measured best for its tiles of the same kind; then into L1 (<see cref="InterleavedSteps.PrefetchTwoStage"/>).</summary>
    private const int PrefetchAhead = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512) && Gfni.V512.IsSupported;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state) => Q8_KKernels.QuantizeRowAvx512(x, state, n);

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the shape
    /// is not Q3_K's or a tile row has a non-finite d (the f16 conversion handles finite values only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (n <= 0 || n % SuperBlock != 0 || rowBytes != (long)n / SuperBlock * BlockBytes)
            return false;
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var tileBytes = TileRows * rowBytes;
        if (!FiniteScales(source + GgufD, rowBytes, tiles * TileRows, blocks, BlockBytes))
            return false;
        for (var tile = 0; tile < tiles; tile++)
        {
            var dst = destination + tile * tileBytes;
            for (var r = 0; r < TileRows; r++)
            {
                var row = source + (tile * TileRows + r) * rowBytes;
                for (var b = 0; b < blocks; b++)
                {
                    var block = row + b * BlockBytes;
                    var tileBlock = dst + b * TileBlockBytes;
                    ((ushort*)tileBlock)[r] = *(ushort*)(block + GgufD);
                    for (var g = 0; g < 3; g++)
                        *(uint*)(tileBlock + ScalesOffset + QuantPosition(r, g)) = *(uint*)(block + GgufScales + 4 * g);
                    for (var k = 0; k < 8; k++)
                        *(uint*)(tileBlock + HighBitsOffset + QuantPosition(r, k)) = *(uint*)(block + 4 * k);
                    for (var i = 0; i < 16; i++)
                        *(uint*)(tileBlock + QuantsOffset + QuantPosition(r, i)) = *(uint*)(block + 32 + 4 * i);
                }
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    private protected override void WholeTiles(byte* weights, long rowBytes, int tiles, byte* state, int n, float* y) =>
        Tiles(weights, rowBytes, tiles, state, n / SuperBlock, y);

    private protected override void WholeTilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int n, float* y, long yStride) =>
        TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, n / SuperBlock, y, yStride);

    /// <summary>Whole tiles, one token.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes)
                acc += HalfToSingle512(w) * Vector512.Create(*(float*)a) * Vector512.ConvertToSingle(SuperBlockSums(w, a));
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// Σ_s (ls_s − 32)·Σ q·a over one tile super-block for its 16 rows and the token whose Q8_K block is at
    /// <paramref name="a"/> (prefetching the tile stream ahead).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector512<int> SuperBlockSums(byte* w, byte* a)
    {
        var ahead = w + PrefetchAhead;
        for (var line = 0; line < 4; line++)
            PrefetchTwoStage(ahead + 64 * line, PrefetchAhead); // d, scales (224 bytes) and the first hmask line
        var (s0, s1, s2, s3) = Scales(w);
        // Quarters in the order that keeps each hmask group's lines hot: h = 0 and 1 of the same half share them. Four
        // calls with constant h and half, not a loop: as loop variables they made the JIT build each quarter's GFNI
        // matrices and scale-pick vectors from scalars (llama-1b pp128 at one thread 28 t/s; unrolled 64).
        var sumi = (Quarter(w, ahead, a, 0, 0, s0, s1) + Quarter(w, ahead, a, 1, 0, s2, s3))
            + (Quarter(w, ahead, a, 0, 1, s0, s1) + Quarter(w, ahead, a, 1, 1, s2, s3));
        return sumi - Vector512.ShiftLeft(OffsetSums(s0, s1, s2, s3, (short*)(a + BsumsOffset)), 2);
    }

    /// <summary>
    /// Σ (ls − 32)·Σ q·a of one quarter for 16 rows: the qs groups 8h + 4·half + m (m = 0..3) with hmask groups
    /// 4·half + m, that is elements 128h + 32j + 16·half + 0..15 of planes j = 0..3 (prefetching their lines ahead).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Quarter(byte* w, byte* ahead, byte* a, int h, int half, Vector512<byte> low, Vector512<byte> high)
    {
        var q = w + QuantsOffset + 64 * (8 * h + 4 * half);
        var hm = w + HighBitsOffset + 64 * 4 * half;
        var x = a + 4 + 128 * h + 16 * half;
        var prefetch = ahead + QuantsOffset + 64 * (8 * h + 4 * half);
        PrefetchTwoStage(prefetch, PrefetchAhead);
        PrefetchTwoStage(prefetch + 64, PrefetchAhead);
        PrefetchTwoStage(prefetch + 128, PrefetchAhead);
        PrefetchTwoStage(prefetch + 192, PrefetchAhead);
        if (h == 0)
        {
            // This quarter is the first reader of its four hmask groups.
            var lines = ahead + HighBitsOffset + 64 * 4 * half;
            PrefetchTwoStage(lines + 64, PrefetchAhead);
            PrefetchTwoStage(lines + 128, PrefetchAhead);
            PrefetchTwoStage(lines + 192, PrefetchAhead);
            PrefetchTwoStage(lines + 256, PrefetchAhead);
        }
        var bits = new HighBits(h);
        var (c0, c1, c2, c3) = Codes(Vector512.Load(q), Vector512.Load(hm), bits);
        var p0 = Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(x));
        var p1 = Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(x + 32));
        var p2 = Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(x + 64));
        var p3 = Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(x + 96));
        for (var m = 1; m < 4; m++)
        {
            (c0, c1, c2, c3) = Codes(Vector512.Load(q + 64 * m), Vector512.Load(hm + 64 * m), bits);
            p0 += Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(x + 4 * m));
            p1 += Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(x + 32 + 4 * m));
            p2 += Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(x + 64 + 4 * m));
            p3 += Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(x + 96 + 4 * m));
        }
        return Drain(p0, p1, p2, p3, low, high, half);
    }

    /// <summary>The 16 six-bit scales ls of each row: byte p of lane r of vector k is sub-block 4k + p's (llama.cpp's unpacking).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>) Scales(byte* w)
    {
        var aux0 = Vector512.Load((uint*)(w + ScalesOffset));
        var aux1 = Vector512.Load((uint*)(w + ScalesOffset + 64));
        var top = Vector512.Load((uint*)(w + ScalesOffset + 128));
        var low4 = Vector512.Create(0x0F0F_0F0Fu);
        var two = Vector512.Create(0x0303_0303u);
        return (((aux0 & low4) | Vector512.ShiftLeft(top & two, 4)).AsByte(),
            ((aux1 & low4) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(top, 2) & two, 4)).AsByte(),
            ((Vector512.ShiftRightLogical(aux0, 4) & low4) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(top, 4) & two, 4)).AsByte(),
            ((Vector512.ShiftRightLogical(aux1, 4) & low4) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(top, 6) & two, 4)).AsByte());
    }

    /// <summary>
    /// GFNI matrices moving hmask bit 4h + j of every byte to bit 2 (planes 0 and 2) or bit 4 (planes 1 and 3, whose
    /// low bits stay in place as 4·q2) and clearing the rest: row 7 − p of the matrix selects the input bit of output bit p.
    /// </summary>
    private readonly struct HighBits(int h)
    {
        public readonly Vector512<byte> Plane0 = Vector512.Create((1ul << (4 * h)) << 40).AsByte();
        public readonly Vector512<byte> Plane1 = Vector512.Create((1ul << (4 * h + 1)) << 24).AsByte();
        public readonly Vector512<byte> Plane2 = Vector512.Create((1ul << (4 * h + 2)) << 40).AsByte();
        public readonly Vector512<byte> Plane3 = Vector512.Create((1ul << (4 * h + 3)) << 24).AsByte();
    }

    /// <summary>A qs group's four code planes with their hmask bits: u, 4u, u, 4u (u = q2 + 4·hbit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<byte>, Vector512<byte>, Vector512<byte>, Vector512<byte>) Codes(Vector512<byte> v, Vector512<byte> hm, HighBits bits)
    {
        var three = Vector512.Create((byte)0x03);
        var twelve = Vector512.Create((byte)0x0C);
        var upper = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte();
        return ((v & three) | Gfni.V512.GaloisFieldAffineTransform(hm, bits.Plane0, 0),
            (v & twelve) | Gfni.V512.GaloisFieldAffineTransform(hm, bits.Plane1, 0),
            (upper & three) | Gfni.V512.GaloisFieldAffineTransform(hm, bits.Plane2, 0),
            (upper & twelve) | Gfni.V512.GaloisFieldAffineTransform(hm, bits.Plane3, 0));
    }

    /// <summary>
    /// Σ_j (ls − 32)·(plane j's sum) in int32 for one quarter (half <paramref name="half"/> of each 32-element run):
    /// plane j is sub-block 8h + 2j + half, byte 2·(j % 2) + half of <paramref name="low"/> (j &lt; 2) or
    /// <paramref name="high"/>; planes 1 and 3 carry 4u and are shifted back first.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Drain(Vector512<short> p0, Vector512<short> p1, Vector512<short> p2, Vector512<short> p3,
        Vector512<byte> low, Vector512<byte> high, int half)
    {
        var even = Q2_KInterleavedMatVec.ScalePick(half);
        var odd = Q2_KInterleavedMatVec.ScalePick(2 + half);
        var bias = Vector512.Create((short)32);
        return (Avx512BW.MultiplyAddAdjacent(p0, Avx512BW.Shuffle(low, even).AsInt16() - bias)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightArithmetic(p1, 2), Avx512BW.Shuffle(low, odd).AsInt16() - bias))
            + (Avx512BW.MultiplyAddAdjacent(p2, Avx512BW.Shuffle(high, even).AsInt16() - bias)
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.ShiftRightArithmetic(p3, 2), Avx512BW.Shuffle(high, odd).AsInt16() - bias));
    }

    /// <summary>
    /// Σ_s (ls_s − 32)·bsums[s] for 16 rows: per scale vector k, lane bytes 0 and 2 (sub-blocks 4k, 4k + 2) and bytes 1
    /// and 3 (4k + 1, 4k + 3) as int16 pairs against broadcast pairs of the activation sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> OffsetSums(Vector512<byte> s0, Vector512<byte> s1, Vector512<byte> s2, Vector512<byte> s3, short* bsums) =>
        (OffsetPairs(s0, bsums) + OffsetPairs(s1, bsums + 4)) + (OffsetPairs(s2, bsums + 8) + OffsetPairs(s3, bsums + 12));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> OffsetPairs(Vector512<byte> scales, short* bsums)
    {
        var words = scales.AsUInt16();
        var bias = Vector512.Create((ushort)32);
        var even = (words & Vector512.Create((ushort)0xFF)) - bias;
        var odd = Vector512.ShiftRightLogical(words, 8) - bias;
        return Avx512BW.MultiplyAddAdjacent(even.AsInt16(), Pair(bsums[0], bsums[2])) + Avx512BW.MultiplyAddAdjacent(odd.AsInt16(), Pair(bsums[1], bsums[3]));
    }

    /// <summary>Two int16 as the low and high half of every int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pair(short low, short high) => Vector512.Create((uint)(ushort)low | ((uint)(ushort)high << 16)).AsInt16();

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each qs group's code planes are built once for the four tokens. The same integer
    /// sums and float step per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int blocks, float* y, long yStride)
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
                var o = b * ActivationBlockBytes;
                var (sumi0, sumi1, sumi2, sumi3) = FourTokenSums(w, s0 + o, s1 + o, s2 + o, s3 + o);
                var dw = HalfToSingle512(w);
                c0 += dw * Vector512.Create(*(float*)(s0 + o)) * Vector512.ConvertToSingle(sumi0);
                c1 += dw * Vector512.Create(*(float*)(s1 + o)) * Vector512.ConvertToSingle(sumi1);
                c2 += dw * Vector512.Create(*(float*)(s2 + o)) * Vector512.ConvertToSingle(sumi2);
                c3 += dw * Vector512.Create(*(float*)(s3 + o)) * Vector512.ConvertToSingle(sumi3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary><see cref="SuperBlockSums"/> of one tile super-block for four tokens (their Q8_K blocks at a0..a3).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static (Vector512<int>, Vector512<int>, Vector512<int>, Vector512<int>) FourTokenSums(byte* w, byte* a0, byte* a1, byte* a2, byte* a3)
    {
        var (s0, s1, s2, s3) = Scales(w);
        Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
        FourTokenQuarter(w, a0, a1, a2, a3, 0, 0, s0, s1, ref sumi0, ref sumi1, ref sumi2, ref sumi3);
        FourTokenQuarter(w, a0, a1, a2, a3, 1, 0, s2, s3, ref sumi0, ref sumi1, ref sumi2, ref sumi3);
        FourTokenQuarter(w, a0, a1, a2, a3, 0, 1, s0, s1, ref sumi0, ref sumi1, ref sumi2, ref sumi3);
        FourTokenQuarter(w, a0, a1, a2, a3, 1, 1, s2, s3, ref sumi0, ref sumi1, ref sumi2, ref sumi3);
        return (sumi0 - Vector512.ShiftLeft(OffsetSums(s0, s1, s2, s3, (short*)(a0 + BsumsOffset)), 2),
            sumi1 - Vector512.ShiftLeft(OffsetSums(s0, s1, s2, s3, (short*)(a1 + BsumsOffset)), 2),
            sumi2 - Vector512.ShiftLeft(OffsetSums(s0, s1, s2, s3, (short*)(a2 + BsumsOffset)), 2),
            sumi3 - Vector512.ShiftLeft(OffsetSums(s0, s1, s2, s3, (short*)(a3 + BsumsOffset)), 2));
    }

    /// <summary><see cref="Quarter"/> for four tokens, without prefetching (the GEMM re-reads a tile from cache).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourTokenQuarter(byte* w, byte* a0, byte* a1, byte* a2, byte* a3, int h, int half, Vector512<byte> low, Vector512<byte> high,
        ref Vector512<int> sumi0, ref Vector512<int> sumi1, ref Vector512<int> sumi2, ref Vector512<int> sumi3)
    {
        var q = w + QuantsOffset + 64 * (8 * h + 4 * half);
        var hm = w + HighBitsOffset + 64 * 4 * half;
        var o = 4 + 128 * h + 16 * half;
        var bits = new HighBits(h);
        Vector512<short> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<short> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<short> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<short> a30 = default, a31 = default, a32 = default, a33 = default;
        for (var m = 0; m < 4; m++, q += 64, hm += 64, o += 4)
        {
            var (c0, c1, c2, c3) = Codes(Vector512.Load(q), Vector512.Load(hm), bits);
            a00 += Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(a0 + o));
            a01 += Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(a0 + o + 32));
            a02 += Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(a0 + o + 64));
            a03 += Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(a0 + o + 96));
            a10 += Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(a1 + o));
            a11 += Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(a1 + o + 32));
            a12 += Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(a1 + o + 64));
            a13 += Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(a1 + o + 96));
            a20 += Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(a2 + o));
            a21 += Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(a2 + o + 32));
            a22 += Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(a2 + o + 64));
            a23 += Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(a2 + o + 96));
            a30 += Avx512BW.MultiplyAddAdjacent(c0, Broadcast512(a3 + o));
            a31 += Avx512BW.MultiplyAddAdjacent(c1, Broadcast512(a3 + o + 32));
            a32 += Avx512BW.MultiplyAddAdjacent(c2, Broadcast512(a3 + o + 64));
            a33 += Avx512BW.MultiplyAddAdjacent(c3, Broadcast512(a3 + o + 96));
        }
        sumi0 += Drain(a00, a01, a02, a03, low, high, half);
        sumi1 += Drain(a10, a11, a12, a13, low, high, half);
        sumi2 += Drain(a20, a21, a22, a23, low, high, half);
        sumi3 += Drain(a30, a31, a32, a33, low, high, half);
    }
}
