using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;
using Lutra.Gguf;
using Lutra.Models.Tuning;

namespace Lutra.Models;

/// <summary>
/// A 2-D weight read in place from the memory-mapped GGUF file, still in its stored ggml type.
/// <see cref="Rows"/> outputs of <see cref="Columns"/> inputs each (GGUF ne = [Columns, Rows]).
/// It starts on the GGUF-layout kernel of its type; when the model's kernel selection picks a repacking kernel
/// (lookup-table or row-interleaved), the matrix keeps a repacked copy for it (repacked at this load or read from
/// the repack cache) and the mapped bytes only serve dequantization and reference mode.
/// </summary>
public sealed unsafe class WeightMatrix : IDisposable
{
    private readonly byte* _data;
    private RepackedCopy? _repacked;

    public WeightMatrix(string name, GgmlType type, int columns, int rows, byte* data)
    {
        var info = QuantTypes.RequireSupported(type);
        if (columns % info.BlockSize != 0)
            throw new GgufFormatException($"tensor '{name}': row length {columns} is not a multiple of the {info.Name} block size {info.BlockSize}");
        Name = name;
        Type = type;
        Columns = columns;
        Rows = rows;
        RowBytes = checked((int)info.RowBytes(columns));
        _data = data;
        Kernel = KernelTable.Get(type);
        KernelData = data;
        KernelRowBytes = RowBytes;
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public int Columns { get; }
    public int Rows { get; }
    public int RowBytes { get; }

    /// <summary>The CPU kernel that multiplies this matrix (chosen once, at load).</summary>
    public MatVecKernel Kernel { get; private set; }

    /// <summary>First byte of row 0 in the memory map.</summary>
    public byte* Data => _data;

    /// <summary>The weights as <see cref="Kernel"/> reads them: the memory map, or the kernel's repacked copy.</summary>
    public byte* KernelData { get; private set; }

    /// <summary>The row stride of <see cref="KernelData"/>: <see cref="RowBytes"/>, or the kernel's <see cref="MatVecKernel.RepackedRowBytes"/>.</summary>
    public long KernelRowBytes { get; private set; }

    /// <summary>Bytes of the repacked copy (0 when the kernel reads the memory map).</summary>
    public long RepackedBytes => _repacked?.Length ?? 0;

    /// <summary>True when the repacked copy was read from the repack cache file rather than repacked at this load.</summary>
    public bool RepackedFromCache => _repacked?.FromCache ?? false;

    /// <summary>Bytes of the weights: rows × row bytes.</summary>
    public long ByteSize => (long)Rows * RowBytes;

    /// <summary>Bytes of this matrix in <paramref name="kernel"/>'s repacked layout (rows × its repacked row bytes).</summary>
    public long RepackedByteSize(MatVecKernel kernel) => (long)Rows * kernel.RepackedRowBytes(RowBytes, Columns);

    /// <summary>
    /// Switches to <paramref name="kernel"/>: a GGUF-layout kernel reads the map (<paramref name="repacked"/> null);
    /// a repacking kernel reads <paramref name="repacked"/>, which it already prepared and this matrix now owns.
    /// </summary>
    internal void Use(MatVecKernel kernel, RepackedCopy? repacked)
    {
        if (kernel.WeightType != Type)
            throw new ArgumentException($"{Name}: kernel {kernel} does not multiply {QuantTypes.Get(Type).Name}", nameof(kernel));
        if (kernel.RepacksWeights != repacked is not null || (repacked is not null && repacked.Length != RepackedByteSize(kernel)))
            throw new ArgumentException($"{Name}: kernel {kernel} needs {(kernel.RepacksWeights ? "a repacked copy" : "the mapped weights")}", nameof(repacked));
        if (!ReferenceEquals(repacked, _repacked))
            _repacked?.Dispose();
        _repacked = repacked;
        Kernel = kernel;
        KernelData = repacked is null ? _data : repacked.Pointer;
        KernelRowBytes = repacked is null ? RowBytes : kernel.RepackedRowBytes(RowBytes, Columns);
    }

    /// <summary>
    /// The weights in <paramref name="kernel"/>'s layout: from <paramref name="cache"/> when it holds them, else
    /// repacked into a new buffer; null (nothing allocated stays) when the kernel's layout cannot represent them.
    /// The caller owns the copy until it passes it to <see cref="Use"/>.
    /// </summary>
    internal RepackedCopy? TryRepack(MatVecKernel kernel, RepackCache? cache = null)
    {
        if (cache?.TryGet(this, kernel) is { } cached)
            return cached;
        var buffer = NativeBuffer.ForStreaming(RepackedByteSize(kernel));
        if (kernel.TryPrepareWeights(_data, RowBytes, Rows, Columns, buffer.Pointer))
            return new RepackedCopy(buffer, fromCache: false);
        buffer.Dispose();
        return null;
    }

    public void Dispose()
    {
        _repacked?.Dispose();
        _repacked = null;
    }

    public ReadOnlySpan<byte> Row(int row) => new(_data + (long)row * RowBytes, RowBytes);

    /// <summary>Row <paramref name="row"/> dequantized to f32 (embedding lookup, reference mode).</summary>
    public void DequantizeRow(int row, Span<float> destination) =>
        QuantReference.Dequantize(Type, Row(row), destination[..Columns]);

    public override string ToString() => $"{Name} [{Columns}, {Rows}] {QuantTypes.Get(Type).Name}";
}
