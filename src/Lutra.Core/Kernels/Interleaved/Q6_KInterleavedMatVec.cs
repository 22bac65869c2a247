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
/// Quad 2m + u covers 16 elements of sub-blocks 2m and 2m + 1 in four "fields": field k's four bytes in row r's lane
/// are elements 32m + 8u + 2k + {0, 1, 16, 17}, so the low int16 of a vpmaddubsw pair belongs to sub-block 2m and the
/// high one to 2m + 1. Vector k &lt; 3 holds field k's 6-bit codes in its low bits and two bits of field 3's code on
/// top (bits 0-1, 2-3, 4-5 in vectors 0, 1, 2): fields 0-2 unpack with one AND each, field 3 with three shifts and
/// three logic ops. The prepared activations carry a copy of each block's values in that element order (the sidecar),
/// so four activation bytes broadcast to every lane still serve 16 rows.
/// </para>
/// <para>
/// vpmaddubsw multiplies the unsigned codes (value + 32) by the activations; two fields' pairs add in int16
/// (|Σ| ≤ 4·63·127 &lt; 2¹⁵), and one vpmaddwd against (sc_2m, sc_2m+1) in each lane gives Σ sc·code·a in int32.
/// The +32 comes off as 32·Σ_m (sc_2m·bsums[2m] + sc_2m+1·bsums[2m+1]), one vpmaddwd per sub-block pair with the
/// same scale vector. The integer sum per super-block is the reference's exactly, and the float arithmetic is the
/// reference's, acc + (d·d_a)·sumi in order, so every output equals <see cref="QuantReference.Dot"/> bit for bit.
/// Rows after the last whole tile keep the GGUF layout and run through the reference dot product.
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
    private const int ActivationBlockBytes = 292;
    private const int BsumsOffset = 4 + SuperBlock;

    /// <summary>
    /// Prefetch distance (into L2, as <see cref="InterleavedSteps.PrefetchDistance"/> says why) over the tile stream (every cache line of it, header included), Q4_K's.
    /// Measured as the best of 15 GEMVs over 256 MiB (4096 columns) against a read probe in the same process, on the
    /// shared machine: distance 0 ~50 %, 4 KiB 83-89 %, 8 KiB 84-93 %, 16 KiB 76-90 %, 24 KiB below 8 KiB.
    /// Each line then goes into L1 2 KiB ahead (<see cref="InterleavedSteps.PrefetchTwoStage"/>).
    /// </summary>
    private const int StreamPrefetchDistance = 8192;

    public static bool IsSupported => KernelIsa.IsSupported(InstructionSet.Avx512);

    public override bool RepacksWeights => true;

    public override int RowTile => TileRows;

    /// <summary>The standard Q8_K row, then the sidecar: each block's 256 values in the tile field order.</summary>
    public override int ActivationBytes(int n) => SidecarOffset(n) + n;

    private int SidecarOffset(int n) => AlignUp(StandardActivationBytes(n));

    /// <summary>
    /// The Q8_K row (bit-identical to the reference), then per 32 values the order of the tile fields: int16 unit j of
    /// the first 16 values next to unit j of the second 16, i.e. an unpack of 16-bit words.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Q8_KKernels.QuantizeRowAvx512(x, state, n);
        var side = state + SidecarOffset(n);
        for (var b = 0; b < n / SuperBlock; b++)
        {
            var qs = state + b * ActivationBlockBytes + 4;
            for (var m = 0; m < 8; m++, side += 32)
            {
                var first = Vector128.Load(qs + 32 * m).AsInt16();
                var second = Vector128.Load(qs + 32 * m + 16).AsInt16();
                Sse2.UnpackLow(first, second).Store((short*)side);
                Sse2.UnpackHigh(first, second).Store((short*)(side + 16));
            }
        }
    }

    /// <summary>
    /// Rewrites whole tiles into the tile layout and copies the rows after them. False, writing nothing, when the
    /// shape is not Q6_K's or a tile row has a non-finite d (the f16 conversion handles finite values only).
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
                    RepackBlock(row + b * BlockBytes, dst + b * TileBlockBytes, r);
            }
        }
        var tail = tiles * tileBytes;
        Buffer.MemoryCopy(source + tail, destination + tail, rows * rowBytes - tail, rows * rowBytes - tail);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RepackBlock(byte* block, byte* tileBlock, int r)
    {
        ((ushort*)tileBlock)[r] = *(ushort*)(block + GgufD);
        for (var g = 0; g < 4; g++)
            *(uint*)(tileBlock + ScalesOffset + QuantPosition(r, g)) = *(uint*)(block + GgufScales + 4 * g);
        // The 256 codes (value + 32) in element order, from the bit planes of formats.md's Q6_K table.
        var codes = stackalloc byte[SuperBlock];
        var nibble = Vector256.Create((byte)0x0F);
        var two = Vector256.Create((byte)3);
        for (var h = 0; h < 2; h++)
        {
            var first = Vector256.Load(block + 64 * h);
            var second = Vector256.Load(block + 64 * h + 32);
            var high = Vector256.Load(block + 128 + 32 * h);
            var run = codes + 128 * h;
            ((first & nibble) | Vector256.ShiftLeft(high & two, 4)).Store(run);
            ((second & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 2) & two, 4)).Store(run + 32);
            (Vector256.ShiftRightLogical(first, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 4) & two, 4)).Store(run + 64);
            (Vector256.ShiftRightLogical(second, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 6), 4)).Store(run + 96);
        }
        // Field order, as the activation sidecar: dword 4t + k holds quad t's field k for this row.
        var fields = stackalloc uint[SuperBlock / 4];
        for (var m = 0; m < 8; m++)
        {
            var lower = Vector128.Load(codes + 32 * m).AsInt16();
            var upper = Vector128.Load(codes + 32 * m + 16).AsInt16();
            Sse2.UnpackLow(lower, upper).AsUInt32().Store(fields + 8 * m);
            Sse2.UnpackHigh(lower, upper).AsUInt32().Store(fields + 8 * m + 4);
        }
        for (var quad = 0; quad < 16; quad++)
        {
            var f = fields + 4 * quad;
            var field3 = f[3];
            var at = tileBlock + QuantsOffset + quad * QuadBytes + 4 * r;
            *(uint*)at = f[0] | ((field3 & 0x0303_0303) << 6);
            *(uint*)(at + 64) = f[1] | (((field3 >> 2) & 0x0303_0303) << 6);
            *(uint*)(at + 128) = f[2] | (((field3 >> 4) & 0x0303_0303) << 6);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        Tiles(weights, rowBytes, tiles, state, state + SidecarOffset(n), blocks, y);
        var activations = new ReadOnlySpan<byte>(state, StandardActivationBytes(n));
        for (var r = tiles * TileRows; r < rows; r++)
            y[r] = Q6_KReference.Dot(new ReadOnlySpan<byte>(weights + r * rowBytes, (int)rowBytes), activations, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        var blocks = n / SuperBlock;
        var tiles = rows / TileRows;
        var t = 0;
        for (; t + 4 <= tokens; t += 4)
        {
            var s0 = states + (long)t * stateStride;
            TilesFourTokens(weights, rowBytes, tiles, s0, SidecarOffset(n), stateStride, blocks, y + t * yStride, yStride);
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

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tiles(byte* weights, long rowBytes, int tiles, byte* state, byte* sidecar, int blocks, float* y)
    {
        for (var tile = 0; tile < tiles; tile++)
        {
            var w = weights + tile * TileRows * rowBytes;
            var a = state;
            var side = sidecar;
            var acc = Vector512<float>.Zero;
            for (var b = 0; b < blocks; b++, w += TileBlockBytes, a += ActivationBlockBytes, side += SuperBlock)
            {
                var p = w + StreamPrefetchDistance;
                PrefetchTwoStage(p, StreamPrefetchDistance);
                PrefetchTwoStage(p + 64, StreamPrefetchDistance);
                PrefetchTwoStage(p + 128, StreamPrefetchDistance);
                PrefetchTwoStage(p + 192, StreamPrefetchDistance);
                PrefetchTwoStage(p + 256, StreamPrefetchDistance);
                var q = w + QuantsOffset;
                var bsums = a + BsumsOffset;
                var (sumi, offset) = Group(q, side, bsums, Vector512.Load(w + ScalesOffset));
                var (sumi1, offset1) = Group(q + 4 * QuadBytes, side + 64, bsums + 8, Vector512.Load(w + ScalesOffset + 64));
                var (sumi2, offset2) = Group(q + 8 * QuadBytes, side + 128, bsums + 16, Vector512.Load(w + ScalesOffset + 128));
                var (sumi3, offset3) = Group(q + 12 * QuadBytes, side + 192, bsums + 24, Vector512.Load(w + ScalesOffset + 192));
                sumi = (sumi + sumi1) + (sumi2 + sumi3) - Vector512.ShiftLeft((offset + offset1) + (offset2 + offset3), 5);
                acc += HalfToSingle512(w) * Vector512.Create(*(float*)a) * Vector512.ConvertToSingle(sumi);
            }
            acc.Store(y + tile * TileRows);
        }
    }

    /// <summary>
    /// One scale group (sub-blocks 4g..4g+3, four quads) for 16 rows: Σ sc·code·a, and Σ sc·bsums for the +32 of the
    /// codes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<int> Sum, Vector512<int> Offset) Group(byte* q, byte* side, byte* bsums, Vector512<byte> scales)
    {
        var first = Pair(scales, 0);
        var second = Pair(scales, 2);
        var sum = QuadPair(q, side, first) + QuadPair(q + 2 * QuadBytes, side + 32, second);
        var offset = Avx512BW.MultiplyAddAdjacent(first, Vector512.Create(*(int*)bsums).AsInt16())
            + Avx512BW.MultiplyAddAdjacent(second, Vector512.Create(*(int*)(bsums + 4)).AsInt16());
        return (sum, offset);
    }

    /// <summary>
    /// Two quads (sub-blocks 2m and 2m + 1): two fields' vpmaddubsw pairs at a time added in int16, then scaled by
    /// (sc_2m, sc_2m+1) into int32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> QuadPair(byte* q, byte* side, Vector512<short> scales)
    {
        var six = Vector512.Create((byte)0x3F);
        var p = q + StreamPrefetchDistance;
        PrefetchTwoStage(p, StreamPrefetchDistance);
        PrefetchTwoStage(p + 64, StreamPrefetchDistance);
        PrefetchTwoStage(p + 128, StreamPrefetchDistance);
        PrefetchTwoStage(p + 192, StreamPrefetchDistance);
        PrefetchTwoStage(p + 256, StreamPrefetchDistance);
        PrefetchTwoStage(p + 320, StreamPrefetchDistance);
        var v0 = Vector512.Load(q);
        var v1 = Vector512.Load(q + 64);
        var v2 = Vector512.Load(q + 128);
        var u0 = Vector512.Load(q + QuadBytes);
        var u1 = Vector512.Load(q + QuadBytes + 64);
        var u2 = Vector512.Load(q + QuadBytes + 128);
        var first = Mad(v0 & six, side) + Mad(v1 & six, side + 4);
        var second = Mad(v2 & six, side + 8) + Mad(Field3(v0, v1, v2), side + 12);
        var third = Mad(u0 & six, side + 16) + Mad(u1 & six, side + 20);
        var fourth = Mad(u2 & six, side + 24) + Mad(Field3(u0, u1, u2), side + 28);
        return (Avx512BW.MultiplyAddAdjacent(first, scales) + Avx512BW.MultiplyAddAdjacent(second, scales))
            + (Avx512BW.MultiplyAddAdjacent(third, scales) + Avx512BW.MultiplyAddAdjacent(fourth, scales));
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

    /// <summary>
    /// Scale bytes <paramref name="k"/> and k + 1 of each lane, sign-extended into the lane's two int16 halves
    /// (vpshufb puts each in the high byte of its int16 and zeroes the low byte, whose index has bit 7 set).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Pair(Vector512<byte> scales, int k)
    {
        const uint z = 0x0080_0080;
        var control = Vector512.Create(z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00, z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00,
            z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00, z, z | 0x0400_0400, z | 0x0800_0800, z | 0x0C00_0C00)
            + Vector512.Create((uint)(k << 8 | (k + 1) << 24));
        return Avx512BW.ShiftRightArithmetic(Avx512BW.Shuffle(scales, control.AsByte()).AsInt16(), 8);
    }

    /// <summary>vpmaddubsw of unsigned codes against four activation bytes broadcast to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Mad(Vector512<byte> codes, byte* a) =>
        Avx512BW.MultiplyAddAdjacent(codes, Vector512.Create(*(int*)a).AsSByte());

    /// <summary>
    /// GEMM tile: four tokens × 16 rows; each quad pair's codes are unpacked once for the four tokens. The same integer
    /// sums and float order per token as <see cref="Tiles"/>, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TilesFourTokens(byte* weights, long rowBytes, int tiles, byte* s0, int sidecarOffset, int stateStride, int blocks, float* y, long yStride)
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
                var sb = sidecarOffset + b * SuperBlock;
                Vector512<int> sumi0 = default, sumi1 = default, sumi2 = default, sumi3 = default;
                Vector512<int> offset0 = default, offset1 = default, offset2 = default, offset3 = default;
                for (var m = 0; m < 8; m++)
                {
                    var scales = Pair(Vector512.Load(w + ScalesOffset + 64 * (m >> 1)), 2 * (m & 1));
                    var o = ab + BsumsOffset + 4 * m;
                    offset0 += Avx512BW.MultiplyAddAdjacent(scales, Vector512.Create(*(int*)(s0 + o)).AsInt16());
                    offset1 += Avx512BW.MultiplyAddAdjacent(scales, Vector512.Create(*(int*)(s1 + o)).AsInt16());
                    offset2 += Avx512BW.MultiplyAddAdjacent(scales, Vector512.Create(*(int*)(s2 + o)).AsInt16());
                    offset3 += Avx512BW.MultiplyAddAdjacent(scales, Vector512.Create(*(int*)(s3 + o)).AsInt16());
                    var q = w + QuantsOffset + 2 * m * QuadBytes;
                    var v0 = Vector512.Load(q);
                    var v1 = Vector512.Load(q + 64);
                    var v2 = Vector512.Load(q + 128);
                    var u0 = Vector512.Load(q + QuadBytes);
                    var u1 = Vector512.Load(q + QuadBytes + 64);
                    var u2 = Vector512.Load(q + QuadBytes + 128);
                    var k0 = v0 & six;
                    var k1 = v1 & six;
                    var k2 = v2 & six;
                    var k3 = Field3(v0, v1, v2);
                    var k4 = u0 & six;
                    var k5 = u1 & six;
                    var k6 = u2 & six;
                    var k7 = Field3(u0, u1, u2);
                    var side = sb + 32 * m;
                    sumi0 += QuadPairToken(k0, k1, k2, k3, k4, k5, k6, k7, s0 + side, scales);
                    sumi1 += QuadPairToken(k0, k1, k2, k3, k4, k5, k6, k7, s1 + side, scales);
                    sumi2 += QuadPairToken(k0, k1, k2, k3, k4, k5, k6, k7, s2 + side, scales);
                    sumi3 += QuadPairToken(k0, k1, k2, k3, k4, k5, k6, k7, s3 + side, scales);
                }
                var dw = HalfToSingle512(w);
                c0 += dw * Vector512.Create(*(float*)(s0 + ab)) * Vector512.ConvertToSingle(sumi0 - Vector512.ShiftLeft(offset0, 5));
                c1 += dw * Vector512.Create(*(float*)(s1 + ab)) * Vector512.ConvertToSingle(sumi1 - Vector512.ShiftLeft(offset1, 5));
                c2 += dw * Vector512.Create(*(float*)(s2 + ab)) * Vector512.ConvertToSingle(sumi2 - Vector512.ShiftLeft(offset2, 5));
                c3 += dw * Vector512.Create(*(float*)(s3 + ab)) * Vector512.ConvertToSingle(sumi3 - Vector512.ShiftLeft(offset3, 5));
            }
            var yt = y + tile * TileRows;
            c0.Store(yt);
            c1.Store(yt + yStride);
            c2.Store(yt + 2 * yStride);
            c3.Store(yt + 3 * yStride);
        }
    }

    /// <summary>One token's Σ sc·code·a over a quad pair's eight unpacked fields (the sums of <see cref="QuadPair"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> QuadPairToken(Vector512<byte> k0, Vector512<byte> k1, Vector512<byte> k2, Vector512<byte> k3,
        Vector512<byte> k4, Vector512<byte> k5, Vector512<byte> k6, Vector512<byte> k7, byte* side, Vector512<short> scales) =>
        (Avx512BW.MultiplyAddAdjacent(Mad(k0, side) + Mad(k1, side + 4), scales) + Avx512BW.MultiplyAddAdjacent(Mad(k2, side + 8) + Mad(k3, side + 12), scales))
        + (Avx512BW.MultiplyAddAdjacent(Mad(k4, side + 16) + Mad(k5, side + 20), scales) + Avx512BW.MultiplyAddAdjacent(Mad(k6, side + 24) + Mad(k7, side + 28), scales));
}
