using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;
using static Lutra.Core.Kernels.InterleavedSteps;

namespace Lutra.Core.Kernels;

/// <summary>
/// Q6_K weights · Q8_K activations over 16-row interleaved tiles (AVX-512 BW; see <see cref="InterleavedSteps"/>).
/// <para>
/// Tile super-block (3360 bytes, 16 GGUF super-blocks' worth): the 16 rows' f16 d, then the 16 int8 scales as four
/// 64-byte groups (group g holds scales 4g..4g+3 of row r in int32 lane r), then 16 quads of three 64-byte vectors.
/// Quad t = 8h + i covers, for every row, elements 128h + 32f + 4i + j (f, j &lt; 4): byte j of row r's lane in
/// vector f &lt; 3 holds the 6-bit code of field f in its low bits and two bits of field 3's code on top (bits 0-1,
/// 2-3, 4-5 of it in vectors 0, 1, 2). Fields 0-2 unpack with one AND each and field 3 with three shifts and three
/// logic ops, where the GGUF bit planes cost a shift and a merge per code.
/// </para>
/// <para>
/// vpmaddubsw multiplies the unsigned codes (value + 32) by the activations; two quads' pairs add in int16
/// (|Σ| ≤ 4·63·128 &lt; 2¹⁵), and one vpmaddwd against the row's sub-block scale (sign-extended into both int16
/// halves of its lane) gives sc·Σ code·a in int32. The +32 comes off as 32·Σ_s sc_s·bsums[s], eight vpmaddwd of
/// 32·sc pairs against the activation block sums. The integer sum per super-block is the reference's exactly, and
/// the float arithmetic is the reference's, acc + (d·d_a)·sumi in order, so every output equals
/// <see cref="QuantReference.Dot"/> bit for bit. Rows after the last whole tile keep the GGUF layout and run
/// through the reference dot product.
/// </para>
/// </summary>
public sealed unsafe class Q6_KInterleavedMatVec() : MatVecKernel(GgmlType.Q6_K, InstructionSet.Avx512, "AVX-512 BW 16-row interleaved")
{
    private const int SuperBlock = 256;
    private const int BlockBytes = 210;
    private const int GgufScales = 192;
    private const int GgufD = 208;
    private const int TileBlockBytes = TileRows * BlockBytes;
    private const int ScalesOffset = 2 * TileRows;
    private const int QuantsOffset = ScalesOffset + 16 * TileRows;
    private const int QuadBytes = 3 * 64;
    private const int HalfBytes = 8 * QuadBytes;
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>Non-temporal prefetch distance over the tile stream (every cache line of it, header included).</summary>
    private const int StreamPrefetchDistance = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    public override void PrepareActivations(float* x, int n, byte* state) => Q8_KKernels.QuantizeRowAvx512(x, state, n);

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the
    /// shape is not Q6_K's or a tile row has a non-finite d (the f16 conversion handles finite values only).
    /// </summary>
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
                    RepackBlock(row + b * BlockBytes, dst + b * TileBlockBytes, r);
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    private static void RepackBlock(byte* block, byte* tileBlock, int r)
    {
        ((ushort*)tileBlock)[r] = *(ushort*)(block + GgufD);
        for (var g = 0; g < 4; g++)
            *(uint*)(tileBlock + ScalesOffset + QuantPosition(r, g)) = *(uint*)(block + GgufScales + 4 * g);
        var ql = block;
        var qh = block + 128;
        for (var h = 0; h < 2; h++)
        {
            for (var l = 0; l < 32; l++)
            {
                int first = ql[64 * h + l], second = ql[64 * h + 32 + l], high = qh[32 * h + l];
                var c0 = (first & 0xF) | ((high & 3) << 4);
                var c1 = (second & 0xF) | (((high >> 2) & 3) << 4);
                var c2 = (first >> 4) | (((high >> 4) & 3) << 4);
                var c3 = (second >> 4) | (((high >> 6) & 3) << 4);
                var quad = tileBlock + QuantsOffset + (8 * h + l / 4) * QuadBytes + 4 * r + l % 4;
                quad[0] = (byte)(c0 | ((c3 & 3) << 6));
                quad[64] = (byte)(c1 | (((c3 >> 2) & 3) << 6));
                quad[128] = (byte)(c2 | ((c3 >> 4) << 6));
            }
        }
    }

    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        Tiles(weights, rowBytes, tiles, state, blocks, y);
        var activations = new ReadOnlySpan<byte>(state, StandardActivationBytes(n));
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = Q6_KReference.Dot(new ReadOnlySpan<byte>(weights + r * rowBytes, (int)rowBytes), activations, n);
    }

    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            TilesFourTokens(weights, rowBytes, tiles, s0, stateStride, blocks, y + t * yStride, yStride);
            for (var k = 0; k < 4; k++)
            {
                var activations = new ReadOnlySpan<byte>(s0 + (long)k * stateStride, StandardActivationBytes(n));
                for (var r = tiles * TileRows; r < rows; r++)
                    y[(t + k) * yStride + r] = Q6_KReference.Dot(new ReadOnlySpan<byte>(weights + r * rowBytes, (int)rowBytes), activations, n);
            }
        }
        for (; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes)
            {
                var p = w + StreamPrefetchDistance;
                Sse.PrefetchNonTemporal(p);
                Sse.PrefetchNonTemporal(p + 64);
                Sse.PrefetchNonTemporal(p + 128);
                Sse.PrefetchNonTemporal(p + 192);
                Sse.PrefetchNonTemporal(p + 256);
                var g0 = Vector512.Load(w + ScalesOffset);
                var g1 = Vector512.Load(w + ScalesOffset + 64);
                var g2 = Vector512.Load(w + ScalesOffset + 128);
                var g3 = Vector512.Load(w + ScalesOffset + 192);
                var q = w + QuantsOffset;
                var sumi = Half(q, a + 4, g0, g1) + Half(q + HalfBytes, a + 132, g2, g3);
                sumi -= OffsetSums(g0, g1, g2, g3, a + BsumsOffset);
                acc += HalfToSingle512(w) * Vector512.Create(*(float*)a) * Vector512.ConvertToSingle(sumi);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>Σ sc·Σ code·a over one half super-block (eight quads) for 16 rows; gA, gB its two scale groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Half(byte* q, byte* a, Vector512<byte> gA, Vector512<byte> gB)
    {
        // Quads 0-3 hold elements 0-15 of each 32-run (sub-blocks 2f), quads 4-7 elements 16-31 (sub-blocks 2f + 1).
        var s0 = Pair(gA, 0);
        var s1 = Pair(gA, 2);
        var s2 = Pair(gB, 0);
        var s3 = Pair(gB, 2);
        var low = QuadPair(q, a, s0, s1, s2, s3) + QuadPair(q + 2 * QuadBytes, a + 8, s0, s1, s2, s3);
        s0 = Pair(gA, 1);
        s1 = Pair(gA, 3);
        s2 = Pair(gB, 1);
        s3 = Pair(gB, 3);
        var high = QuadPair(q + 4 * QuadBytes, a + 16, s0, s1, s2, s3) + QuadPair(q + 6 * QuadBytes, a + 24, s0, s1, s2, s3);
        return low + high;
    }

    /// <summary>
    /// Two consecutive quads (same sub-blocks): per field the vpmaddubsw pairs of both added in int16, then scaled by
    /// the field's sub-block scale into int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> QuadPair(byte* q, byte* a, Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3)
    {
        var six = Vector512.Create((byte)0x3F);
        var p = q + StreamPrefetchDistance;
        Sse.PrefetchNonTemporal(p);
        Sse.PrefetchNonTemporal(p + 64);
        Sse.PrefetchNonTemporal(p + 128);
        Sse.PrefetchNonTemporal(p + 192);
        Sse.PrefetchNonTemporal(p + 256);
        Sse.PrefetchNonTemporal(p + 320);
        var v0 = Vector512.Load(q);
        var v1 = Vector512.Load(q + 64);
        var v2 = Vector512.Load(q + 128);
        var u0 = Vector512.Load(q + QuadBytes);
        var u1 = Vector512.Load(q + QuadBytes + 64);
        var u2 = Vector512.Load(q + QuadBytes + 128);
        var f0 = Mad(v0 & six, a) + Mad(u0 & six, a + 4);
        var f1 = Mad(v1 & six, a + 32) + Mad(u1 & six, a + 36);
        var f2 = Mad(v2 & six, a + 64) + Mad(u2 & six, a + 68);
        var f3 = Mad(Field3(v0, v1, v2), a + 96) + Mad(Field3(u0, u1, u2), a + 100);
        return Avx512BW.MultiplyAddAdjacent(f0, s0) + Avx512BW.MultiplyAddAdjacent(f1, s1)
            + (Avx512BW.MultiplyAddAdjacent(f2, s2) + Avx512BW.MultiplyAddAdjacent(f3, s3));
    }

    /// <summary>Field 3's codes from the top two bits of a quad's three vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Field3(Vector512<byte> v0, Vector512<byte> v1, Vector512<byte> v2)
    {
        var low = Select(Vector512.Create((byte)0x03), Vector512.ShiftRightLogical(v0.AsUInt16(), 6).AsByte(), Vector512.ShiftRightLogical(v1.AsUInt16(), 4).AsByte());
        return Select(Vector512.Create((byte)0x0F), low, Vector512.ShiftRightLogical(v2.AsUInt16(), 2).AsByte()) & Vector512.Create((byte)0x3F);
    }

    /// <summary>Bits of <paramref name="ones"/> where <paramref name="mask"/> is set, of <paramref name="zeros"/> elsewhere.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Select(Vector512<byte> mask, Vector512<byte> ones, Vector512<byte> zeros) =>
        Avx512F.TernaryLogic(ones, zeros, mask, 0xE4);

    /// <summary>Σ_s 32·sc_s·bsums[s] for 16 rows: the codes' +32 times the scaled activation sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> OffsetSums(Vector512<byte> g0, Vector512<byte> g1, Vector512<byte> g2, Vector512<byte> g3, byte* bsums) =>
        (OffsetGroup(g0, bsums) + OffsetGroup(g1, bsums + 8)) + (OffsetGroup(g2, bsums + 16) + OffsetGroup(g3, bsums + 24));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> OffsetGroup(Vector512<byte> g, byte* bsums) =>
        Avx512BW.MultiplyAddAdjacent(Times32(g, 0), Vector512.Create(*(int*)bsums).AsInt16())
        + Avx512BW.MultiplyAddAdjacent(Times32(g, 2), Vector512.Create(*(int*)(bsums + 4)).AsInt16());

    /// <summary>32·scale <paramref name="k"/> and 32·scale k + 1 of each lane as its two int16 halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Times32(Vector512<byte> g, int k) =>
        Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(g, ScaleControl(k, k + 1)).AsInt16(), 3);

    /// <summary>Scale byte <paramref name="k"/> of each lane, sign-extended into both int16 halves of the lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pair(Vector512<byte> g, int k) =>
        Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(g, ScaleControl(k, k)).AsInt16(), 8);

    /// <summary>
    /// vpshufb control putting byte <paramref name="low"/> of each lane in the high byte of the lane's low int16 and
    /// byte <paramref name="high"/> in that of its high int16, zeroing the low bytes (their index has bit 7 set).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> ScaleControl(int low, int high)
    {
        const uint z = 0x0080_0080;
        return (Vector512.Create(z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00, z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00,
            z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00, z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00)
            + Vector512.Create((uint)(low << 8 | high << 24))).AsByte();
    }

    /// <summary>vpmaddubsw of unsigned codes against four activation bytes broadcast to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Mad(Vector512<byte> codes, byte* a) =>
        Avx512BW.MultiplyAddAdjacent(codes, Vector512.Create(*(int*)a).AsSByte());

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each field's codes are unpacked once for the four tokens. The same integer
    /// sums and float order per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int stateStride, int blocks, float* y, long yStride)
    {
        var six = Vector512.Create((byte)0x3F);
        var s1 = s0 + stateStride;
        var s2 = s1 + stateStride;
        var s3 = s2 + stateStride;
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes)
            {
                var ab = b * ActivationBlockBytes;
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                for (var g = 0; g < 4; g++)
                {
                    var scales = Vector512.Load(w + ScalesOffset + 64 * g);
                    var even = Times32(scales, 0);
                    var odd = Times32(scales, 2);
                    var o = ab + BsumsOffset + 8 * g;
                    sumi0 -= Avx512BW.MultiplyAddAdjacent(even, Vector512.Create(*(int*)(s0 + o)).AsInt16()) + Avx512BW.MultiplyAddAdjacent(odd, Vector512.Create(*(int*)(s0 + o + 4)).AsInt16());
                    sumi1 -= Avx512BW.MultiplyAddAdjacent(even, Vector512.Create(*(int*)(s1 + o)).AsInt16()) + Avx512BW.MultiplyAddAdjacent(odd, Vector512.Create(*(int*)(s1 + o + 4)).AsInt16());
                    sumi2 -= Avx512BW.MultiplyAddAdjacent(even, Vector512.Create(*(int*)(s2 + o)).AsInt16()) + Avx512BW.MultiplyAddAdjacent(odd, Vector512.Create(*(int*)(s2 + o + 4)).AsInt16());
                    sumi3 -= Avx512BW.MultiplyAddAdjacent(even, Vector512.Create(*(int*)(s3 + o)).AsInt16()) + Avx512BW.MultiplyAddAdjacent(odd, Vector512.Create(*(int*)(s3 + o + 4)).AsInt16());
                }
                // Per (half h, 16-element run lh, field f): sub-block 8h + 2f + lh over four quads.
                for (var run = 0; run < 4; run++)
                {
                    var h = run >> 1;
                    var lh = run & 1;
                    var quads = w + QuantsOffset + h * HalfBytes + lh * 4 * QuadBytes;
                    for (var f = 0; f < 4; f++)
                    {
                        var scale = Pair(Vector512.Load(w + ScalesOffset + 128 * h + 64 * (f >> 1)), 2 * (f & 1) + lh);
                        Vector512<byte> k0, k1, k2, k3;
                        if (f < 3)
                        {
                            k0 = Vector512.Load(quads + 64 * f) & six;
                            k1 = Vector512.Load(quads + QuadBytes + 64 * f) & six;
                            k2 = Vector512.Load(quads + 2 * QuadBytes + 64 * f) & six;
                            k3 = Vector512.Load(quads + 3 * QuadBytes + 64 * f) & six;
                        }
                        else
                        {
                            k0 = Field3(Vector512.Load(quads), Vector512.Load(quads + 64), Vector512.Load(quads + 128));
                            k1 = Field3(Vector512.Load(quads + QuadBytes), Vector512.Load(quads + QuadBytes + 64), Vector512.Load(quads + QuadBytes + 128));
                            k2 = Field3(Vector512.Load(quads + 2 * QuadBytes), Vector512.Load(quads + 2 * QuadBytes + 64), Vector512.Load(quads + 2 * QuadBytes + 128));
                            k3 = Field3(Vector512.Load(quads + 3 * QuadBytes), Vector512.Load(quads + 3 * QuadBytes + 64), Vector512.Load(quads + 3 * QuadBytes + 128));
                        }
                        var ao = ab + 4 + 128 * h + 16 * lh + 32 * f;
                        sumi0 += Field(k0, k1, k2, k3, s0 + ao, scale);
                        sumi1 += Field(k0, k1, k2, k3, s1 + ao, scale);
                        sumi2 += Field(k0, k1, k2, k3, s2 + ao, scale);
                        sumi3 += Field(k0, k1, k2, k3, s3 + ao, scale);
                    }
                }
                var dw = HalfToSingle512(w);
                c0 += dw * Vector512.Create(*(float*)(s0 + ab)) * Vector512.ConvertToSingle(sumi0);
                c1 += dw * Vector512.Create(*(float*)(s1 + ab)) * Vector512.ConvertToSingle(sumi1);
                c2 += dw * Vector512.Create(*(float*)(s2 + ab)) * Vector512.ConvertToSingle(sumi2);
                c3 += dw * Vector512.Create(*(float*)(s3 + ab)) * Vector512.ConvertToSingle(sumi3);
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>One token's sc·Σ code·a over four quads of one field (one 16-element sub-block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Field(Vector512<byte> k0, Vector512<byte> k1, Vector512<byte> k2, Vector512<byte> k3, byte* a, Vector512<short> scale) =>
        Avx512BW.MultiplyAddAdjacent(Mad(k0, a) + Mad(k1, a + 4), scale) + Avx512BW.MultiplyAddAdjacent(Mad(k2, a + 8) + Mad(k3, a + 12), scale);

    /// <summary>16 rows' f16 values as f32, exactly for finite values (the trick of <see cref="InterleavedSteps.HalfToSingle"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToSingle512(byte* halves) =>
        (Vector512.ShiftLeft(Avx512F.ConvertToVector512Int32(Vector256.Load((short*)halves)), 13) & Vector512.Create(unchecked((int)0x8FFF_FFFF))).AsSingle()
        * Vector512.Create(TwoTo112);
}
