using Lutra.Core.Quants;

namespace Lutra.Gguf;

/// <summary>
/// One tensor's header entry. <see cref="Shape"/> is in ggml <c>ne</c> order: Shape[0] is the contiguous
/// row length, Shape[1] the number of rows, and so on.
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Shape, GgmlType Type, ulong Offset)
{
    /// <summary>Absolute file offset of the tensor's first byte (data section start + <see cref="Offset"/>).</summary>
    public long DataOffset { get; init; }

    /// <summary>Bytes of tensor data.</summary>
    public long ByteSize { get; init; }

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape)
                n = checked(n * d);
            return n;
        }
    }

    /// <summary>Row length (ne[0]).</summary>
    public long Columns => Shape.Length > 0 ? Shape[0] : 1;

    /// <summary>Number of rows: the product of ne[1..].</summary>
    public long Rows
    {
        get
        {
            long n = 1;
            for (var i = 1; i < Shape.Length; i++)
                n = checked(n * Shape[i]);
            return n;
        }
    }

    public QuantTypeInfo TypeInfo => QuantTypes.Get(Type);

    public long RowBytes => TypeInfo.RowBytes(Columns);

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}] {TypeInfo.Name}";
}
